"""Routes: which requests write PHI (encrypted, for which practice) or read one practice's data.

Templates are matched segment by segment: literal segments compare exactly, a `{param}` segment
takes any non-empty segment. No regular expression ever comes from the config. Pass the
request's decoded path (aiohttp `request.path`). A request that does not match (a trailing
slash, a doubled slash, other case) is simply not a write route, and `encrypt_request` then
refuses plaintext PHI in it, so a near-miss fails closed instead of leaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from proxy.transform.settings import RouteTemplate, WriteRouteSettings

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["RouteMatch", "RouteTable", "WriteRouteMatch", "WriteRouteTable"]

R = TypeVar("R", bound=RouteTemplate)
R_co = TypeVar("R_co", bound=RouteTemplate, covariant=True)


class RoutesSection(Protocol[R_co]):
    """A validated `write_routes:` or `read_routes:` section."""

    @property
    def root(self) -> tuple[R_co, ...]:
        """The routes, in the config's order."""
        ...


@dataclass(frozen=True, slots=True)
class RouteMatch(Generic[R]):
    """A request matched to a route, with the values of its path parameters."""

    route: R
    params: Mapping[str, str]

    def path_practice(self) -> str | None:
        """The practice a `{path_param: …}` route names (None for a body-key route)."""
        name = getattr(self.route.practice_from, "path_param", None)
        return None if name is None else self.params.get(name)


@dataclass(frozen=True, slots=True)
class _Compiled(Generic[R]):
    route: R
    segments: tuple[str | None, ...]  # None: a parameter
    names: tuple[str, ...]


class RouteTable(Generic[R]):
    """Compiled routes, indexed by (method, number of segments); first match wins."""

    __slots__ = ("_index",)

    def __init__(self, index: Mapping[tuple[str, int], tuple[_Compiled[R], ...]]) -> None:
        """Use `RouteTable.compile`."""
        self._index = index

    @classmethod
    def compile(cls, section: RoutesSection[R]) -> RouteTable[R]:
        """Build the table from a validated routes section."""
        index: dict[tuple[str, int], list[_Compiled[R]]] = {}
        for route in section.root:
            segments = tuple(None if s.startswith("{") else s for s in route.path[1:].split("/"))
            compiled = _Compiled(route, segments, route.params())
            index.setdefault((route.method, len(segments)), []).append(compiled)
        return cls(MappingProxyType({k: tuple(v) for k, v in index.items()}))

    def match_route(self, method: str, path: str) -> RouteMatch[R] | None:
        """The route for this request, or None if it is not one."""
        if not path.startswith("/"):
            return None
        parts = path[1:].split("/")
        for candidate in self._index.get((method.upper(), len(parts)), ()):
            values = []
            for want, got in zip(candidate.segments, parts, strict=True):
                if want is None:
                    if not got:
                        break
                    values.append(got)
                elif want != got:
                    break
            else:
                return RouteMatch(
                    candidate.route,
                    MappingProxyType(dict(zip(candidate.names, values, strict=True))),
                )
        return None


#: The write routes' table and match (the request transform's types).
WriteRouteTable = RouteTable[WriteRouteSettings]
WriteRouteMatch = RouteMatch[WriteRouteSettings]

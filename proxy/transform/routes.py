"""Write routes: which requests get their PHI fields encrypted, and for which practice.

Templates are matched segment by segment: literal segments compare exactly, a `{param}` segment
takes any non-empty segment. No regular expression ever comes from the config. Pass the
request's decoded path (aiohttp `request.path`). A request that does not match (a trailing
slash, a doubled slash, other case) is simply not a write route, and `encrypt_request` then
refuses plaintext PHI in it, so a near-miss fails closed instead of leaking.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from proxy.transform.settings import WriteRouteSettings, WriteRoutesSettings

__all__ = ["RouteMatch", "RouteTable"]


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """A request matched to a write route, with the values of its path parameters."""

    route: WriteRouteSettings
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class _Compiled:
    route: WriteRouteSettings
    segments: tuple[str | None, ...]  # None: a parameter
    names: tuple[str, ...]


class RouteTable:
    """Compiled write routes, indexed by (method, number of segments); first match wins."""

    __slots__ = ("_index",)

    def __init__(self, index: Mapping[tuple[str, int], tuple[_Compiled, ...]]) -> None:
        """Use `RouteTable.compile`."""
        self._index = index

    @classmethod
    def compile(cls, settings: WriteRoutesSettings) -> RouteTable:
        """Build the table from validated settings."""
        index: dict[tuple[str, int], list[_Compiled]] = {}
        for route in settings.root:
            segments = tuple(None if s.startswith("{") else s for s in route.path[1:].split("/"))
            compiled = _Compiled(route, segments, route.params())
            index.setdefault((route.method, len(segments)), []).append(compiled)
        return cls(MappingProxyType({k: tuple(v) for k, v in index.items()}))

    def match_route(self, method: str, path: str) -> RouteMatch | None:
        """The write route for this request, or None if it is not one."""
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

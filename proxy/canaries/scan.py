r"""Find registered canary tokens in bytes: a search for their exact text, nothing decrypted.

A canary token is a whole token string, so a byte search is exact and needs no parse. Tokens
are grouped by header (`phi1.<mode>.<kid>.<class>.`): a few of one header are each searched for
(a substring search for a long needle skips ahead, ~10 GB/s); more are found by splitting the
body at that header and looking the bytes after each occurrence up in a table. A JSON body can
spell a token with `\u00XX` escapes that a client decodes (orjson decodes them before the walk
decides the value); only when such an escape of an ASCII character is present is the body
decoded and searched again. Other escaped spellings never reach a caller: the transform refuses
the body (502 `escaped_token`).

The cost is paid on every transformed body once at least one canary is registered, whether or
not it holds one, so a canary's presence does not change how long a response takes to come
(docs/canaries.md has the figures). With no canaries, nothing is searched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from operator import itemgetter
from typing import TYPE_CHECKING, Final

import orjson

from keys.token_format import TOKEN_PREFIX_BYTES

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["NO_CANARIES", "CanaryHit", "CanaryScanner"]

#: Up to this many canaries of one header, one substring search each beats splitting the body.
_SEARCH_EACH_MAX: Final = 4
#: A JSON escape of an ASCII character: the only escapes that can spell token characters.
_ASCII_ESCAPE: Final = re.compile(rb"\\u00[2-7][0-9a-fA-F]")


@dataclass(frozen=True, slots=True, order=True)
class CanaryHit:
    """A registered canary token found in some bytes: whose, which class, under which key."""

    canary: str
    practice: str
    field_class: str
    kid: str


class _Group:
    """The canary tokens sharing one header (`phi1.<mode>.<kid>.<class>.`), ready to search."""

    __slots__ = ("_by_start", "_cut", "_each", "_header")

    def __init__(self, header: bytes, tokens: list[bytes]) -> None:
        self._header = header
        self._each = tuple(tokens) if len(tokens) <= _SEARCH_EACH_MAX else ()
        width = min(len(t) for t in tokens) - len(header)
        self._cut = itemgetter(slice(0, width))
        self._by_start: dict[bytes, list[bytes]] = {}
        for token in tokens:
            self._by_start.setdefault(token[len(header) : len(header) + width], []).append(token)

    def find(self, data: bytes) -> list[bytes]:
        """The tokens of this group that `data` holds."""
        if self._each:
            # count, not `in`: it reads the whole body whether or not the token is there.
            return [t for t in self._each if data.count(t)]
        if self._header not in data:
            return []
        # Every occurrence of the header starts a token; its next bytes name the candidates
        # (split, slice and set intersection all run in C, whatever the number of canaries).
        starts = self._by_start.keys() & set(map(self._cut, data.split(self._header)[1:]))
        return [t for start in starts for t in self._by_start[start] if t in data]


class CanaryScanner:
    """The registered canary tokens of one pipeline snapshot, ready to search for."""

    __slots__ = ("_by_token", "_groups")

    def __init__(self, tokens: Mapping[str, CanaryHit]) -> None:
        """Search for each token in `tokens` (token text → what it is)."""
        self._by_token = {token.encode("ascii"): hit for token, hit in tokens.items()}
        grouped: dict[bytes, list[bytes]] = {}
        for token in self._by_token:
            grouped.setdefault(token[: token.rindex(b".") + 1], []).append(token)
        self._groups = tuple(_Group(header, group) for header, group in grouped.items())

    def __len__(self) -> int:
        return len(self._by_token)

    def __repr__(self) -> str:
        return f"<CanaryScanner canaries={len(self._by_token)}>"  # never the tokens

    def find(self, data: bytes) -> frozenset[CanaryHit]:
        """The canaries whose token `data` holds, literally or JSON-escaped."""
        if not self._by_token:
            return frozenset()
        if TOKEN_PREFIX_BYTES not in data:
            return self._find_escaped(data)
        return self._find_literal(data) | self._find_escaped(data)

    def _find_literal(self, data: bytes) -> frozenset[CanaryHit]:
        return frozenset(self._by_token[t] for group in self._groups for t in group.find(data))

    def _find_escaped(self, data: bytes) -> frozenset[CanaryHit]:
        # One byte first: `in` searches for a single byte at memchr speed, for two ~10x slower.
        if b"\\" not in data or _ASCII_ESCAPE.search(data) is None:
            return frozenset()
        try:
            decoded = orjson.dumps(orjson.loads(data))
        except orjson.JSONDecodeError:
            return frozenset()  # not JSON: escaped tokens there are refused by the transform
        return self._find_literal(decoded) if TOKEN_PREFIX_BYTES in decoded else frozenset()


#: The scanner of a proxy without canaries: finds nothing, costs one length check.
NO_CANARIES: Final = CanaryScanner({})

r"""Find registered canary tokens in bytes: a search for their exact text, nothing decrypted.

A canary token is a whole token string, so a byte search is exact and needs no parse: a few
canaries are each searched for (`bytes.__contains__`, memchr speed), more are one regular
expression (the engine factors out the common `phi1.` prefix). A JSON body can spell a token
with `\u00XX` escapes that a client decodes (orjson decodes them before the walk decides the
value); only when such an escape of an ASCII character is present is the body decoded and
searched again. Other escaped spellings never reach a caller: the transform refuses the body
(502 `escaped_token`).

The cost is paid on every transformed body once at least one canary is registered, whether or
not it holds one, so a canary's presence does not change how long a response takes to come
(docs/canaries.md has the figures). With no canaries, nothing is searched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import orjson

from keys.token_format import TOKEN_PREFIX_BYTES

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["NO_CANARIES", "CanaryHit", "CanaryScanner"]

#: Up to this many canaries, one substring search each beats the regular expression.
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


class CanaryScanner:
    """The registered canary tokens of one pipeline snapshot, ready to search for."""

    __slots__ = ("_by_token", "_each", "_pattern")

    def __init__(self, tokens: Mapping[str, CanaryHit]) -> None:
        """Search for each token in `tokens` (token text → what it is)."""
        self._by_token = {token.encode("ascii"): hit for token, hit in tokens.items()}
        # Longest first: one token can never be a prefix of another of the same class and key
        # (the payload lengths differ), but an alternation must not stop at a shorter one.
        ordered = sorted(self._by_token, key=len, reverse=True)
        self._each = tuple(ordered) if len(ordered) <= _SEARCH_EACH_MAX else ()
        self._pattern = (
            re.compile(b"|".join(map(re.escape, ordered)))
            if len(ordered) > _SEARCH_EACH_MAX
            else None
        )

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
        if self._pattern is None:
            return frozenset(self._by_token[t] for t in self._each if t in data)
        return frozenset(self._by_token[t] for t in set(self._pattern.findall(data)))

    def _find_escaped(self, data: bytes) -> frozenset[CanaryHit]:
        if b"\\u" not in data or _ASCII_ESCAPE.search(data) is None:
            return frozenset()
        try:
            decoded = orjson.dumps(orjson.loads(data))
        except orjson.JSONDecodeError:
            return frozenset()  # not JSON: escaped tokens there are refused by the transform
        return self._find_literal(decoded) if TOKEN_PREFIX_BYTES in decoded else frozenset()


#: The scanner of a proxy without canaries: finds nothing, costs one length check.
NO_CANARIES: Final = CanaryScanner({})

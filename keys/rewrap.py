"""Re-encrypting tokens to their practice's current key, inside any text, without leaking it.

Tokens are self-describing (`phi1.<mode>.<kid>.<class>.<payload>`), so a SQL dump, a CSV export
or a JSON-lines file can be rewrapped without knowing its format: find every token with
`TOKEN_PATTERN`, open it, encrypt the plaintext again under the practice's primary key with the
same field class and mode, and write everything else back byte for byte. Plaintext exists only
inside `TokenRewrapper.__call__`, for the length of one token.

A token that is already under the primary key is left as it is, so a second run changes
nothing (idempotent). A token that cannot be opened (unknown or retired key, damaged) is also
left as it is and counted by reason code: rewrapping must never destroy data.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO, Final

from keys.errors import InvalidToken, KeyringError
from keys.token_format import (
    MODE_DETERMINISTIC,
    TOKEN_PATTERN,
    TOKEN_PATTERN_BYTES,
    TOKEN_PREFIX,
    kid_of,
    parse_token_fast,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from keys.keyring import Keyring

__all__ = [
    "CHUNK_SIZE",
    "TokenCensus",
    "TokenRewrapper",
    "count_tokens",
    "counting_only",
    "rewrite_stream",
    "rewrite_text",
]

CHUNK_SIZE: Final = 1 << 20
# The last byte that cannot belong to a token, followed only by bytes that can: everything up to
# and including it is safe to process, since no token can straddle it.
_LAST_SEPARATOR: Final = re.compile(rb"[^A-Za-z0-9_.\-][A-Za-z0-9_.\-]*\Z")


@dataclass
class TokenCensus:
    """What a scan or rewrap saw: tokens per kid before and after, and failures per reason."""

    before: Counter[str] = field(default_factory=Counter)
    after: Counter[str] = field(default_factory=Counter)
    changed: int = 0
    unopenable: Counter[str] = field(default_factory=Counter)

    def merge(self, other: TokenCensus) -> None:
        """Add another census's counts to this one."""
        self.before.update(other.before)
        self.after.update(other.after)
        self.changed += other.changed
        self.unopenable.update(other.unopenable)


class TokenRewrapper:
    """Callable: one token in, the same token or one under the practice's primary key out."""

    def __init__(
        self,
        keyring: Keyring,
        census: TokenCensus | None = None,
        *,
        on_rewrapped: Callable[[str, str], None] | None = None,
    ) -> None:
        """`on_rewrapped(old, new)` is called for each token replaced (the canary follower)."""
        self._keyring = keyring
        self.census = census if census is not None else TokenCensus()
        self._on_rewrapped = on_rewrapped

    def __repr__(self) -> str:
        return f"<TokenRewrapper changed={self.census.changed}>"

    def __call__(self, token: str) -> str:
        """Rewrapped token, or `token` itself when current or unopenable."""
        census = self.census
        ring = self._keyring
        try:
            mode, kid, _cls, _aad, _payload = parse_token_fast(token)
        except InvalidToken:
            census.unopenable[ring.diagnose(token)] += 1
            return token
        census.before[kid] += 1
        result = token
        practice = ring.practice_of(kid)
        try:
            if practice is None:
                census.unopenable["unknown-kid"] += 1
            elif kid != ring.primary(practice).kid:
                opened = ring.open(token)
                result = ring.encrypt(
                    practice,
                    opened.field_class,
                    opened.plaintext,
                    deterministic=mode == MODE_DETERMINISTIC,
                )
                census.changed += 1
        except InvalidToken:
            census.unopenable[ring.diagnose(token)] += 1
        except KeyringError:  # no active key: the practice was shredded
            census.unopenable["no-active-key"] += 1
        census.after[kid_of(result)] += 1
        if result != token and self._on_rewrapped is not None:
            self._on_rewrapped(token, result)
        return result


def rewrite_text(text: str, replace: Callable[[str], str]) -> str:
    """Apply `replace` to every token in `text`; other characters are untouched."""
    if TOKEN_PREFIX not in text:
        return text
    return TOKEN_PATTERN.sub(lambda m: replace(m.group()), text)


def count_tokens(text: str, census: TokenCensus) -> None:
    """Count the tokens in `text` per kid (into `before` and `after`), without opening any."""
    if TOKEN_PREFIX not in text:
        return
    for match in TOKEN_PATTERN.finditer(text):
        kid = kid_of(match.group())
        census.before[kid] += 1
        census.after[kid] += 1


def counting_only(census: TokenCensus) -> Callable[[str], str]:
    """A `replace` for `rewrite_stream` that changes nothing and counts each token per kid.

    What `--dry-run` and the pre-retire scan use: the same scan as a rewrap, no key opened.
    """

    def count(token: str) -> str:
        count_tokens(token, census)
        return token

    return count


def rewrite_stream(
    source: BinaryIO,
    sink: BinaryIO | None,
    replace: Callable[[str], str],
    *,
    chunk_size: int = CHUNK_SIZE,
) -> None:
    """Copy `source` to `sink` (None: read only), passing every token through `replace`.

    Works on bytes, so any encoding that keeps ASCII as ASCII (UTF-8, Latin-1) passes through
    unchanged, including invalid sequences. Memory stays near `chunk_size` unless the input
    holds a huge run of token characters with no separator.
    """

    def fix(match: re.Match[bytes]) -> bytes:
        return replace(match.group().decode("ascii")).encode("ascii")

    def emit(part: bytes) -> None:
        if b"phi1." in part:
            part = TOKEN_PATTERN_BYTES.sub(fix, part)
        if sink is not None:
            sink.write(part)

    pending = b""
    while chunk := source.read(chunk_size):
        pending += chunk
        separator = _LAST_SEPARATOR.search(pending)
        if separator is None:
            continue
        cut = separator.start() + 1
        emit(pending[:cut])
        pending = pending[cut:]
    emit(pending)

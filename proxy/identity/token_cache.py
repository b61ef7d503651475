"""A bounded memory of bearer tokens that already passed full verification.

Verifying an ES256/RS256 JWT costs ~200 µs of CPU (signature plus PyJWT's decoding) and a client
sends the same token on every request until it expires. This cache remembers, per exact token,
the caller it verified to and the token's `exp`/`iat`/`nbf`, so a repeat costs one SHA-256.

What it never changes:

* **Expiry.** A hit re-checks `exp`/`iat`/`nbf` against the request's `now` with the same
  leeway, so a cached token stops working at the same second an uncached one would.
* **Key rotation and removal.** Each entry records the JWKS generation it was verified under;
  when the JWKS changes (a refresh loaded different keys), the whole cache is dropped, so a key
  removed from the JWKS stops verifying its tokens at the first refresh that sees it gone.
* **Failures.** Only tokens that passed every check are stored; a refusal is never remembered,
  in either direction.

Keys are SHA-256 digests of the token, so the cache holds no credential that could be replayed
from a memory dump. Size is capped by count; the oldest entry is evicted first, and an entry found
expired is dropped on sight.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from proxy.identity.subject import Caller

__all__ = ["DEFAULT_TOKEN_CACHE_ENTRIES", "TokenTimes", "VerifiedTokenCache", "time_failure"]

#: Entries kept by default: ~200 bytes each, so well under a few MiB.
DEFAULT_TOKEN_CACHE_ENTRIES: Final = 4096

TokenTimes = tuple[float, float, float | None]
"""A verified token's (exp, iat, nbf); nbf is None when the token has none."""


def time_failure(times: TokenTimes, now: float, leeway: float) -> str | None:
    """The refusal reason for a token with these times at `now`, or None while it is valid.

    The one rule for both paths (fresh verification and cache hit), so they cannot drift.
    """
    exp, iat, nbf = times
    if exp <= now - leeway:
        return "expired"
    if iat > now + leeway:
        return "issued_in_future"
    if nbf is not None and nbf > now + leeway:
        return "not_yet_valid"
    return None


class VerifiedTokenCache:
    """Token digest → (caller, times), valid for one JWKS generation; bounded by count."""

    __slots__ = ("_entries", "_generation", "max_entries")

    def __init__(self, max_entries: int = DEFAULT_TOKEN_CACHE_ENTRIES) -> None:
        """Keep at most `max_entries` tokens (0 disables the cache)."""
        if max_entries < 0:
            raise ValueError("max_entries must be >= 0")
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[Caller, TokenTimes]] = {}
        self._generation: int | None = None

    def __repr__(self) -> str:
        return f"VerifiedTokenCache({len(self._entries)}/{self.max_entries})"

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key_of(token: str) -> bytes:
        """The digest a token is stored under."""
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()

    def _sync(self, generation: int) -> None:
        if generation != self._generation:
            self._entries.clear()
            self._generation = generation

    def get(self, key: bytes, generation: int) -> tuple[Caller, TokenTimes] | None:
        """The stored caller and times, if `key` was verified under this JWKS generation."""
        self._sync(generation)
        return self._entries.get(key)

    def put(self, key: bytes, generation: int, caller: Caller, times: TokenTimes) -> None:
        """Remember a token that passed every check under JWKS `generation`."""
        if self.max_entries == 0:
            return
        self._sync(generation)
        entries = self._entries
        if key not in entries:
            while len(entries) >= self.max_entries:
                del entries[next(iter(entries))]
        entries[key] = (caller, times)

    def discard(self, key: bytes) -> None:
        """Forget one token (found expired or otherwise unusable)."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every token."""
        self._entries.clear()

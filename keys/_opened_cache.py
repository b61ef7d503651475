"""A bounded memo of tokens this keyring has already opened: token text → (practice, class, value).

Why it is safe: a token is authenticated ciphertext, so the exact same token text always opens to
the exact same plaintext under the same keyring; the key states inside one `Keyring` never change
(a rotation, retirement or shred builds a new keyring, and with it an empty cache). Only tokens
that opened successfully are remembered. The cache decides nothing about *who* may see a value:
callers consult it only after the grant decision, exactly where they would otherwise decrypt
(see THREAT_MODEL.md, "Decrypted-value cache").

Bounds: at most `max_entries` tokens and `max_bytes` characters of token + plaintext. When full,
the oldest eighth goes at once (FIFO in batches: a hit does not refresh, which keeps a hit to one
dict lookup, and eviction costs nothing per insert).
"""

from __future__ import annotations

from itertools import islice
from typing import Final

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_CACHE_ENTRIES", "OpenedCache"]

DEFAULT_CACHE_ENTRIES: Final = 16_384
DEFAULT_CACHE_BYTES: Final = 8 << 20
_ENTRY_OVERHEAD: Final = 200  # str headers, the tuple and the dict slot, beyond the characters
_EVICT_FRACTION: Final = 8  # evict 1/8 of the entries at a time


class OpenedCache:
    """FIFO-bounded map of opened tokens; never holds a token that failed to open."""

    __slots__ = ("_bytes", "_entries", "get", "max_bytes", "max_entries")

    def __init__(
        self, *, max_entries: int = DEFAULT_CACHE_ENTRIES, max_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: dict[str, tuple[str, str, str]] = {}  # insertion order = age
        self._bytes = 0
        self.get = self._entries.get  # bound once: a hit is one C-level call

    def __repr__(self) -> str:  # never the tokens or values
        return f"<OpenedCache entries={len(self._entries)} bytes={self._bytes}>"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Characters held (tokens + plaintexts) plus a fixed overhead per entry."""
        return self._bytes

    def put(self, token: str, opened: tuple[str, str, str]) -> None:
        """Remember one successfully opened token, evicting the oldest entries to stay bounded."""
        cost = len(token) + len(opened[2]) + _ENTRY_OVERHEAD
        if cost > self.max_bytes or self.max_entries <= 0:
            return
        entries = self._entries
        if len(entries) >= self.max_entries or self._bytes + cost > self.max_bytes:
            self._evict(cost)
        if entries.setdefault(token, opened) is opened:  # not already there: count it
            self._bytes += cost

    def _evict(self, room: int) -> None:
        """Drop the oldest eighth of the entries, and more until `room` more bytes fit."""
        entries = self._entries
        batch = max(1, self.max_entries // _EVICT_FRACTION)
        while entries:
            for old_token in list(islice(entries, batch)):
                old = entries.pop(old_token, None)
                if old is not None:
                    self._bytes -= len(old_token) + len(old[2]) + _ENTRY_OVERHEAD
            if len(entries) < self.max_entries and self._bytes + room <= self.max_bytes:
                return

    def clear(self) -> None:
        """Forget everything (e.g. before a keyring is dropped)."""
        self._entries.clear()
        self._bytes = 0

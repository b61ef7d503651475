"""The issuer's public keys (a JWKS), cached, with refreshes that an attacker cannot multiply.

A token naming a key id we do not know may mean the issuer rotated keys, so we reload the JWKS —
but at most once per `jwks_refresh_min_interval`, whatever the number of such tokens: a flood of
forged `kid`s costs one fetch per interval, never one per request. Concurrent callers share one
in-flight refresh. A failed refresh keeps the keys we already had.

A JWKS entry is used for a token only when its `use` is absent or ``sig``, its `key_ops` is absent
or includes ``verify``, its `alg` is absent or equal to the token's, and its key type fits the
token's algorithm. Symmetric (`oct`) keys never fit anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import jwt

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MAX_JWKS_BYTES", "JwksCache", "JwksFetcher", "JwksUnavailableError", "file_fetcher"]

_log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1 << 20
_MAX_KEYS = 64

# Which JWK key types (and curves) can verify which algorithm.
_FITS: dict[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}

JwksFetcher = Callable[[], Awaitable[bytes]]
"""Returns the raw JWKS document; raises any exception when it cannot."""


class JwksUnavailableError(Exception):
    """No JWKS has ever been loaded, so no token can be verified."""


def file_fetcher(path: Path) -> JwksFetcher:
    """A fetcher that reads the JWKS from a local file (re-read on every refresh)."""

    async def fetch() -> bytes:
        with path.open("rb") as handle:
            return handle.read(MAX_JWKS_BYTES + 1)

    return fetch


def _parse(document: bytes) -> list[dict[str, Any]]:
    if len(document) > MAX_JWKS_BYTES:
        raise ValueError("JWKS document too large")
    data = json.loads(document)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise TypeError("JWKS document has no 'keys' list")
    keys = [k for k in data["keys"] if isinstance(k, dict)]
    return keys[:_MAX_KEYS]


def _usable(entry: dict[str, Any], alg: str) -> bool:
    fit = _FITS.get(alg)
    if fit is None:
        return False
    kty, curves = fit
    if entry.get("kty") != kty or (curves is not None and entry.get("crv") not in curves):
        return False
    if "use" in entry and entry["use"] != "sig":
        return False
    if "key_ops" in entry:
        ops = entry["key_ops"]
        if not isinstance(ops, list) or "verify" not in ops:
            return False
    return "alg" not in entry or entry["alg"] == alg


class JwksCache:
    """Holds the parsed JWKS and answers "which keys may verify this kid/alg?"."""

    def __init__(
        self, fetcher: JwksFetcher, *, min_refresh_interval: float, max_age: float | None = None
    ) -> None:
        """`max_age`: reload keys this old even without an unknown kid (a removed key stops)."""
        self._fetch = fetcher
        self._interval = min_refresh_interval
        self._max_age = max_age
        self._loaded_at: float | None = None
        self._entries: list[dict[str, Any]] | None = None
        self._built: dict[tuple[int, str], jwt.PyJWK] = {}
        self._last_attempt: float | None = None
        self._lock = asyncio.Lock()
        self.fetch_count = 0
        #: Bumped whenever a refresh loads keys that differ from the ones held: anything
        #: remembered about tokens verified under an older generation must be dropped.
        self.generation = 0

    async def keys_for(self, kid: str | None, alg: str, *, now: float) -> list[jwt.PyJWK]:
        """Keys that may verify a token with this `kid` and `alg`; may trigger one refresh.

        Raises:
            JwksUnavailableError: the JWKS has never been loaded successfully.
        """
        if self._entries is None or not self._matching(kid) or self._stale(now):
            await self._refresh(now)
        if self._entries is None:
            raise JwksUnavailableError
        keys = []
        for index, entry in enumerate(self._entries):
            if (kid is not None and entry.get("kid") != kid) or not _usable(entry, alg):
                continue
            built = self._build(index, entry, alg)
            if built is not None:
                keys.append(built)
        return keys

    def _matching(self, kid: str | None) -> bool:
        if kid is None or self._entries is None:
            return self._entries is not None
        return any(entry.get("kid") == kid for entry in self._entries)

    def _build(self, index: int, entry: dict[str, Any], alg: str) -> jwt.PyJWK | None:
        cached = self._built.get((index, alg))
        if cached is None:
            try:
                cached = jwt.PyJWK(entry, algorithm=alg)
            except jwt.PyJWTError:
                return None
            self._built[(index, alg)] = cached
        return cached

    def _due(self, now: float) -> bool:
        last = self._last_attempt
        # A clock stepped backwards must not block refreshes until it catches up again.
        return last is None or now - last >= self._interval or now < last

    def _stale(self, now: float) -> bool:
        loaded, age = self._loaded_at, self._max_age
        return loaded is not None and age is not None and (now - loaded >= age or now < loaded)

    async def _refresh(self, now: float) -> None:
        # Always queue on the lock: a request arriving while a refresh is in flight waits for
        # its result instead of failing with "no keys yet".
        async with self._lock:
            if not self._due(now):
                return
            self._last_attempt = now
            self.fetch_count += 1
            try:
                entries = _parse(await self._fetch())
            except Exception as exc:  # noqa: BLE001 - any fetch failure keeps the old keys
                _log.warning(
                    "JWKS refresh failed (%s); keeping %s; next attempt in %.0f s at the earliest",
                    exc.__class__.__name__,
                    "the previous keys" if self._entries is not None else "no keys",
                    self._interval,
                )
                return
            if entries != self._entries:
                self.generation += 1
            self._entries = entries
            self._loaded_at = now
            self._built = {}

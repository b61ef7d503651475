"""Sealed cookies: AES-256-GCM under a key that lives only in the running proxy's memory.

The console keeps no session table. What a session is (who, which token, until when, the CSRF
secret) travels in the cookie, sealed: encrypted and authenticated, so the browser can neither
read nor change it. The key is made once when `phi-proxy serve` starts, before the workers are
spawned, and handed to each of them (never written to disk), so every worker opens every
worker's cookies; a restart makes a new key, which logs everyone out.

Each kind of cookie is sealed with its own purpose as associated data: a login-in-progress
cookie can never be replayed as a session cookie.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any, Final

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_BYTES", "Sealer", "new_key"]

KEY_BYTES: Final = 32
_NONCE_BYTES: Final = 12
#: A sealed value longer than this is refused before any decryption (cookies are small).
_MAX_SEALED: Final = 4096


def new_key() -> bytes:
    """A fresh random key (32 bytes) for one run of the proxy."""
    return os.urandom(KEY_BYTES)


class Sealer:
    """Seals JSON objects into URL-safe text and opens them again; None for anything forged."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the console's cookie key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, purpose: str, payload: dict[str, Any]) -> str:
        """`payload` encrypted and authenticated for `purpose`, as unpadded base64url text."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = nonce + self._aead.encrypt(nonce, orjson.dumps(payload), purpose.encode())
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, purpose: str, text: str | None) -> dict[str, Any] | None:
        """The payload sealed for `purpose`, or None (missing, truncated, forged, other purpose)."""
        if not text or len(text) > _MAX_SEALED:
            return None
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) <= _NONCE_BYTES:
            return None
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
        except InvalidTag:
            return None
        value = orjson.loads(plain)
        return value if isinstance(value, dict) else None

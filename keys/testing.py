"""Public test helpers: a ready Keyring with fresh random keys, no files and no KEK.

Used by the proxy's tests and benchmarks, which need real ciphertext but not a keystore.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keys._aead import DEK_BYTES
from keys.keyring import KeyInfo, Keyring, KeyState

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["make_keyring"]


def make_keyring(practices: Iterable[str], *, now: datetime | None = None) -> Keyring:
    """A Keyring with one ACTIVE version-1 key of fresh random material per practice."""
    created = now if now is not None else datetime.now(UTC)
    return Keyring.from_material(
        (
            KeyInfo(secrets.token_hex(8), practice, 1, KeyState.ACTIVE, created),
            secrets.token_bytes(DEK_BYTES),
        )
        for practice in dict.fromkeys(practices)
    )

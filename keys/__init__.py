"""Everything about phi-proxy's keys: token format, AEAD, keyring, keystore, KEKs, `phi-keys`.

The names below are the supported API. `keys._aead` (the raw ciphers) is private on purpose:
request handlers go through `Keyring.encrypt` / `Keyring.open`, never a cipher object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (keys._lazy): CLIs start fast
    from keys.errors import (
        ConfigError,
        InvalidToken,
        KekError,
        KekUnavailable,
        KeyringError,
        KeystoreError,
        PhiProxyError,
    )
    from keys.kek import EnvKek, FileKek, KekProvider, generate_kek_file
    from keys.keyring import KeyInfo, Keyring, KeyState, OpenedToken
    from keys.keystore import KeystoreFile
    from keys.settings import KeySettings, open_keyring
    from keys.token_format import (
        TOKEN_PATTERN,
        TOKEN_PATTERN_BYTES,
        TOKEN_PREFIX,
        TOKEN_PREFIX_BYTES,
    )

__all__ = [
    "TOKEN_PATTERN",
    "TOKEN_PATTERN_BYTES",
    "TOKEN_PREFIX",
    "TOKEN_PREFIX_BYTES",
    "ConfigError",
    "EnvKek",
    "FileKek",
    "InvalidToken",
    "KekError",
    "KekProvider",
    "KekUnavailable",
    "KeyInfo",
    "KeySettings",
    "KeyState",
    "Keyring",
    "KeyringError",
    "KeystoreError",
    "KeystoreFile",
    "OpenedToken",
    "PhiProxyError",
    "generate_kek_file",
    "open_keyring",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "keys.errors": (
            "ConfigError",
            "InvalidToken",
            "KekError",
            "KekUnavailable",
            "KeyringError",
            "KeystoreError",
            "PhiProxyError",
        ),
        "keys.kek": (
            "EnvKek",
            "FileKek",
            "KekProvider",
            "generate_kek_file",
        ),
        "keys.keyring": (
            "KeyInfo",
            "Keyring",
            "KeyState",
            "OpenedToken",
        ),
        "keys.keystore": ("KeystoreFile",),
        "keys.settings": (
            "KeySettings",
            "open_keyring",
        ),
        "keys.token_format": (
            "TOKEN_PATTERN",
            "TOKEN_PATTERN_BYTES",
            "TOKEN_PREFIX",
            "TOKEN_PREFIX_BYTES",
        ),
    },
)

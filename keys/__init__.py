"""Everything about phi-proxy's keys: token format, AEAD, keyring, keystore, KEKs, `phi-keys`.

The names below are the supported API. `keys._aead` (the raw ciphers) is private on purpose:
request handlers go through `Keyring.encrypt` / `Keyring.open`, never a cipher object.
"""

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

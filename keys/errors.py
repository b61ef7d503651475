"""Every error phi-proxy raises on purpose, in one tree.

    PhiProxyError                 root: catch this to catch everything we raise on purpose
    ├── ConfigError               the YAML config is missing, unreadable or invalid
    ├── InvalidToken              any ciphertext token that cannot be opened (opaque, no message)
    ├── KeyringError              a key operation that cannot be done (unknown practice, no key)
    │   └── KeystoreError         the keystore file is unreadable, corrupt, foreign or locked
    └── KekError                  the key-encryption key cannot be loaded or does not fit
        └── KekUnavailable        the KEK's device or service cannot be used right now (HSM
                                  token removed, wrong PIN, KMS unreachable or refusing)

`proxy.errors` extends the tree with the proxy's own errors (upstream, identity, grants).
Third-party errors are translated into these at exactly one boundary each, with `raise ... from`.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "InvalidToken",
    "KekError",
    "KekUnavailable",
    "KeyringError",
    "KeystoreError",
    "PhiProxyError",
]


class PhiProxyError(Exception):
    """Root of every error phi-proxy raises on purpose."""


class ConfigError(PhiProxyError):
    """The configuration cannot be used; the message names the YAML path and the fix."""


class InvalidToken(PhiProxyError):
    """A ciphertext token is malformed, unauthentic, or names a key we cannot use.

    Deliberately carries no message: why a token failed must not be observable by whoever
    supplied it. Callers that log the failure record a reason code they chose themselves.
    """

    def __init__(self) -> None:
        super().__init__()


class KeyringError(PhiProxyError):
    """A key operation cannot be carried out (no such practice, no active key, bad state)."""


class KeystoreError(KeyringError):
    """The keystore file cannot be read, parsed, authenticated or written."""


class KekError(PhiProxyError):
    """The key-encryption key cannot be loaded, or it is not the one the keystore was made with."""


class KekUnavailable(KekError):
    """The KEK lives in a device or service that cannot be used right now.

    Distinct from its parent on purpose: a KekError from `unwrap` means "this data does not open
    under this KEK" (tampered or moved), which the keystore reports as a damaged entry; this one
    means nothing was learnt about the data (a removed token, a wrong PIN, an unreachable or
    refusing KMS), so callers fail closed and say what to fix instead of blaming the file.
    """

"""The proxy's errors, added to the tree rooted in `keys.errors`.

    PhiProxyError
    ├── ConfigError, InvalidToken, KeyringError ─ KeystoreError, KekError    (keys.errors)
    ├── AuthenticationError        bearer token missing/invalid      → 401 + WWW-Authenticate
    ├── GrantError                 a grant request breaks a rule (TTL cap, bad subject)
    │   └── GrantStoreUnavailable  the grant store cannot be read or written
    └── ProxyError                 a request the proxy answers itself, with `status`
        ├── RequestRejected        the client's request cannot be forwarded safely (413/415/422)
        ├── UnsafeBody             the upstream body cannot be transformed safely  → 502
        ├── UpstreamUnavailable    the portal cannot be reached                    → 502
        └── UpstreamTimeout        the portal did not answer in time               → 504

aiohttp's client errors become Upstream* in `proxy.forward.upstream`, and nowhere else; one
middleware in `proxy.app` maps every ProxyError to a small JSON body with the request id.
"""

from __future__ import annotations

from keys.errors import (
    ConfigError,
    InvalidToken,
    KekError,
    KeyringError,
    KeystoreError,
    PhiProxyError,
)

__all__ = [
    "ConfigError",
    "InvalidToken",
    "KekError",
    "KeyringError",
    "KeystoreError",
    "PhiProxyError",
    "ProxyError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
]


class ProxyError(PhiProxyError):
    """A request the proxy answers itself. `code` is a stable machine-readable reason."""

    status = 500
    code = "proxy_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class UpstreamUnavailable(ProxyError):
    """The portal refused the connection, reset it, or answered with something unusable."""

    status = 502
    code = "upstream_unavailable"


class UpstreamTimeout(ProxyError):
    """The portal did not answer within the configured timeout."""

    status = 504
    code = "upstream_timeout"

"""The proxy's errors, added to the tree rooted in `keys.errors`.

    PhiProxyError
    ├── ConfigError, InvalidToken, KeyringError ─ KeystoreError,      (keys.errors)
    │   KekError ─ KekUnavailable
    ├── AuthenticationError        bearer token missing/invalid      → 401 + WWW-Authenticate
    ├── GrantError                 a grant request breaks a rule (TTL cap, bad subject)
    │   └── GrantNotFound          revoke named no grant
    ├── GrantStoreUnavailable      the grant store cannot be read or written
    ├── RequestRejected            a request body must not reach the portal (400/415/422)
    ├── UnsafeBody                 a response body cannot be transformed safely    → 502
    └── ProxyError                 a request the proxy answers itself, with `status`
        ├── UpstreamUnavailable    the portal cannot be reached or sent garbage    → 502
        └── UpstreamTimeout        the portal did not answer in time               → 504

Each is defined beside the code that raises it and re-exported here. aiohttp's client errors
become Upstream* in `proxy.forward.upstream`, and nowhere else; one middleware in `proxy.app`
maps every error above to a status and a small JSON body carrying the request id.
"""

from __future__ import annotations

from keys.errors import (
    ConfigError,
    InvalidToken,
    KekError,
    KekUnavailable,
    KeyringError,
    KeystoreError,
    PhiProxyError,
)
from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable
from proxy.identity.errors import AuthenticationError
from proxy.transform.errors import RequestRejected, UnsafeBody

__all__ = [
    "AuthenticationError",
    "ConfigError",
    "GrantError",
    "GrantNotFound",
    "GrantStoreUnavailable",
    "InvalidToken",
    "KekError",
    "KekUnavailable",
    "KeyringError",
    "KeystoreError",
    "PhiProxyError",
    "ProxyError",
    "RequestRejected",
    "RequestTooLarge",
    "UnsafeBody",
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


class RequestTooLarge(ProxyError):
    """The client's body is over limits.max_request_body; nothing was forwarded."""

    status = 413
    code = "request_too_large"


class UpstreamUnavailable(ProxyError):
    """The portal refused the connection, reset it, or answered with something unusable."""

    status = 502
    code = "upstream_unavailable"


class UpstreamTimeout(ProxyError):
    """The portal did not answer within the configured timeout."""

    status = 504
    code = "upstream_timeout"

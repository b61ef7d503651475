"""The one error identity raises: the caller could not be authenticated.

The proxy maps it to `401 Unauthorized` with the `WWW-Authenticate` value it carries. The reason
code is for our logs only; neither it nor any part of the token is ever sent back to the client,
so a forger learns nothing about which check failed.
"""

from __future__ import annotations

from keys.errors import PhiProxyError

__all__ = ["REALM", "AuthenticationError"]

REALM = "phi-proxy"


class AuthenticationError(PhiProxyError):
    """The request's credentials are missing (when required), malformed, or do not verify.

    Attributes:
        reason: a short fixed code such as ``expired`` or ``bad_signature`` for logs and metrics.
        www_authenticate: the complete, safe `WWW-Authenticate` header value (RFC 6750).
    """

    def __init__(self, reason: str, *, error: str | None = "invalid_token") -> None:
        self.reason = reason
        value = f'Bearer realm="{REALM}"'
        if error is not None:
            value += f', error="{error}"'
        self.www_authenticate = value
        super().__init__(f"authentication failed ({reason})")

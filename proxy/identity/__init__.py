"""Identity: who is calling. A verified (issuer, sub) subject, or anonymous.

Authenticator (Protocol)      authenticate(headers, now=) -> Caller; raises AuthenticationError
└── JwtAuthenticator          OIDC bearer JWT checked against a JWKS file or URL
    (token_cache.VerifiedTokenCache: verified tokens by digest; times re-checked on each hit)
build_authenticator(settings) the seam that picks an implementation from the config
DemoIssuer                    mints tokens for tests and the demo (not for production)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (keys._lazy): CLIs start fast
    from proxy.identity.authenticator import Authenticator, JwtAuthenticator, build_authenticator
    from proxy.identity.errors import REALM, AuthenticationError
    from proxy.identity.issuer import DemoIssuer
    from proxy.identity.settings import ALLOWED_ALGORITHMS, IdentitySettings
    from proxy.identity.subject import Caller, Subject

__all__ = [
    "ALLOWED_ALGORITHMS",
    "REALM",
    "AuthenticationError",
    "Authenticator",
    "Caller",
    "DemoIssuer",
    "IdentitySettings",
    "JwtAuthenticator",
    "Subject",
    "build_authenticator",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "proxy.identity.authenticator": (
            "Authenticator",
            "JwtAuthenticator",
            "build_authenticator",
        ),
        "proxy.identity.errors": (
            "REALM",
            "AuthenticationError",
        ),
        "proxy.identity.issuer": ("DemoIssuer",),
        "proxy.identity.settings": (
            "ALLOWED_ALGORITHMS",
            "IdentitySettings",
        ),
        "proxy.identity.subject": (
            "Caller",
            "Subject",
        ),
    },
)

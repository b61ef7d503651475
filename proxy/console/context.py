"""What every console handler can reach: settings, the admin API's context, the cookie sealer.

One ConsoleContext per admin API application, stored under CONSOLE; the session of the request
being served (when there is a valid one) under SESSION.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from aiohttp import web

from proxy.console.session import Session

if TYPE_CHECKING:
    import aiohttp
    import jinja2

    from proxy.admin_api.auth import AdminVerifier
    from proxy.admin_api.handlers import ApiContext
    from proxy.console.id_token import IdTokenVerifier
    from proxy.console.sealing import Sealer
    from proxy.console.settings import ConsoleSettings, OidcClientSettings

__all__ = ["CONSOLE", "PREFIX", "REQUEST_ID", "SESSION", "ConsoleContext"]

#: Every console URL starts with this (pages, forms, static files).
PREFIX: Final = "/console"


@dataclass
class ConsoleContext:
    """Shared by the console's handlers for the life of the listener."""

    settings: ConsoleSettings
    api: ApiContext  # settings, config path, grant store, clock: as the admin API's handlers
    verifier: AdminVerifier  # the admin API's own: same JWKS, issuer, audience, role claim
    id_tokens: IdTokenVerifier
    sealer: Sealer
    templates: jinja2.Environment
    client_secret: str | None = None
    http: aiohttp.ClientSession | None = field(default=None, repr=False)

    @property
    def oidc(self) -> OidcClientSettings:
        """The IdP client settings (validated present when the console is enabled)."""
        if self.settings.oidc is None:  # pragma: no cover - ConsoleSettings refuses this
            raise RuntimeError("console.oidc is not configured")
        return self.settings.oidc

    def client(self) -> aiohttp.ClientSession:
        """The HTTP client for the token endpoint (opened with the listener)."""
        if self.http is None:  # pragma: no cover - the cleanup context opens it first
            raise RuntimeError("the console's HTTP client is not open")
        return self.http


CONSOLE: web.AppKey[ConsoleContext] = web.AppKey("phi_proxy_console", ConsoleContext)
SESSION = web.RequestKey("phi_proxy_console_session", Session)
REQUEST_ID = web.RequestKey("phi_proxy_console_request_id", str)

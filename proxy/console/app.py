"""Wiring the console into the admin API application (only when admin_api.console.enabled).

The console lives on the admin API's listener, under /console/, beside /api/v1: the same
process, the same grant store and the same AdminVerifier. It is never added to the client
(proxy) listener. Its cookie key comes from `phi-proxy serve` (made before workers start, so
all workers share it); an app built without one (tests) makes its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiohttp
import jinja2
from aiohttp import web

from keys.errors import ConfigError
from proxy.console import login, static_files
from proxy.console.context import CONSOLE, PREFIX, ConsoleContext
from proxy.console.id_token import IdTokenVerifier
from proxy.console.pages import redirect
from proxy.console.sealing import Sealer, new_key
from proxy.console.views import VIEWS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from proxy.admin_api.auth import AdminVerifier
    from proxy.admin_api.handlers import ApiContext
    from proxy.console.settings import ConsoleSettings
    from proxy.identity.settings import IdentitySettings

__all__ = ["add_console", "read_client_secret", "templates"]


def when(value: str | None) -> str:
    """`2026-12-17T16:13:25Z` as people read it: `2026-12-17 16:13` (pages say times are UTC)."""
    if not value:
        return "—"
    return value.replace("T", " ").removesuffix("Z")[:16]


def person(subject: str | None) -> str:
    """The person part of ISSUER|SUB (the issuer is shown apart, smaller)."""
    return "—" if not subject else subject.rpartition("|")[2]


def issuer(subject: str | None) -> str:
    """The issuer part of ISSUER|SUB ('' for a plain name such as a CLI user)."""
    return "" if not subject or "|" not in subject else subject.partition("|")[0]


def templates() -> jinja2.Environment:
    """The console's Jinja2 templates (shipped in the package), autoescaping everything."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("proxy.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(when=when, person=person, issuer=issuer)
    return environment


def read_client_secret(settings: ConsoleSettings) -> str | None:
    """The client secret from console.oidc.client_secret_file (None: a public client)."""
    oidc = settings.oidc
    if oidc is None or oidc.client_secret_file is None:
        return None
    path = oidc.client_secret_file
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"console.oidc.client_secret_file {path} cannot be read ({exc.strerror}); create it "
            "with the client secret from the identity provider, mode 0600"
        ) from None
    if not secret:
        raise ConfigError(f"console.oidc.client_secret_file {path} is empty")
    if path.stat().st_mode & 0o077:
        raise ConfigError(
            f"console.oidc.client_secret_file {path} is readable by group or others; "
            f"chmod 600 {path}"
        )
    return secret


def add_console(
    app: web.Application,
    settings: ConsoleSettings,
    *,
    api: ApiContext,
    verifier: AdminVerifier,
    current_identity: Callable[[], IdentitySettings],
    key: bytes | None,
) -> None:
    """Add the console's routes and resources to the admin API `app` (middleware: see app.py)."""
    if settings.oidc is None:  # pragma: no cover - ConsoleSettings refuses this when enabled
        raise ConfigError("admin_api.console needs console.oidc")
    context = ConsoleContext(
        settings=settings,
        api=api,
        verifier=verifier,
        id_tokens=IdTokenVerifier(current_identity, settings.oidc.client_id),
        sealer=Sealer(key or new_key()),
        templates=templates(),
        client_secret=read_client_secret(settings),
    )
    app[CONSOLE] = context

    async def client(_app: web.Application) -> AsyncIterator[None]:
        context.http = aiohttp.ClientSession()
        try:
            yield
        finally:
            await context.http.close()
            await context.id_tokens.close()

    app.cleanup_ctx.append(client)

    async def home(_request: web.Request) -> web.Response:
        return redirect(f"{PREFIX}/grants")

    router = app.router
    router.add_get(PREFIX, home)
    router.add_get(f"{PREFIX}/", home)
    static_files.add_routes(router, static_files.load_static())
    login.add_routes(router, context)
    for view in VIEWS:
        view.add_routes(router, context)

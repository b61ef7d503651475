"""The admin API listener's aiohttp application: authentication, problem details, lifecycle.

Every path under /api/ needs an administrator's bearer token (401 without a valid one, 403
without the admin role) before anything else happens, the body included. /openapi.json is
public: it is the committed docs/admin-api.openapi.json, and describes no data. The grant store
is opened in the app's cleanup context (a store that is down answers 503, never an empty list).
"""

from __future__ import annotations

import logging
import sqlite3
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aiohttp import web

from keys.errors import ConfigError
from proxy.admin_api.auth import AdminVerifier, NotAnAdmin
from proxy.admin_api.handlers import ADMIN, CONTEXT, REQUEST_ID, ApiContext, add_routes
from proxy.admin_api.openapi import render_openapi
from proxy.admin_api.problems import ApiProblem, problem_response
from proxy.audit.errors import AuditError
from proxy.console.context import CONSOLE
from proxy.console.middleware import console_middleware, is_console_path
from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable
from proxy.grants.store import open_grant_store
from proxy.identity.errors import AuthenticationError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from proxy.identity.settings import IdentitySettings
    from proxy.settings import Settings

__all__ = ["MAX_BODY", "build_admin_api_app"]

#: The largest request body accepted: every request is a small JSON object.
MAX_BODY = 64 * 1024

_log = logging.getLogger("phi_proxy.admin_api")

_UNAUTHENTICATED = ApiProblem(
    401,
    "unauthenticated",
    "authentication required",
    "send Authorization: Bearer <token> with a current token from the configured identity "
    "provider, issued for the admin API's audience; the log has the reason under this request_id",
)
_FORBIDDEN = ApiProblem(
    403,
    "not-an-admin",
    "not an administrator",
    "the token is valid but does not carry the admin role (admin_api.role in "
    "admin_api.role_claim); ask the identity provider's administrator to assign it. A PHI "
    "grant does not make anyone an administrator",
)


def _problem_for(exc: Exception, request: web.Request) -> ApiProblem:  # noqa: PLR0911
    if isinstance(exc, ApiProblem):
        return exc
    if isinstance(exc, GrantNotFound):
        return ApiProblem(404, "nothing-to-revoke", "nothing matched", f"{exc}")
    if isinstance(exc, GrantError):
        return ApiProblem(422, "refused", "the grant store refused the change", f"{exc}")
    if isinstance(exc, GrantStoreUnavailable | sqlite3.Error):
        _log.error("admin api: grant store unavailable", extra={"fields": {"error": str(exc)}})
        return ApiProblem(
            503,
            "grant-store-unavailable",
            "grant store unavailable",
            "the grant store cannot be read or written right now, so nothing was read or "
            "changed; check /readyz on the admin port and the proxy's log, then retry",
        )
    if isinstance(exc, ConfigError | AuditError):
        _log.error("admin api: audit trail unreadable", extra={"fields": {"error": str(exc)}})
        return ApiProblem(
            503,
            "audit-trail-unavailable",
            "audit trail unavailable",
            f"the audit trail cannot be read here: {exc}",
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ApiProblem(
            413, "too-large", "request too large", f"request bodies are at most {MAX_BODY} bytes"
        )
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(exc.allowed_methods))
        problem = ApiProblem(
            405,
            "method-not-allowed",
            "method not allowed",
            f"{request.method} is not allowed on {request.path} (only {allowed}); see "
            "/openapi.json",
        )
        problem.headers["Allow"] = allowed
        return problem
    if isinstance(exc, web.HTTPNotFound):
        return ApiProblem(
            404, "no-such-endpoint", "no such endpoint", "see /openapi.json for the endpoints"
        )
    _log.error("admin api: unexpected error", exc_info=exc)
    return ApiProblem(
        500, "internal-error", "internal error", "the admin API failed; the log has the details"
    )


def _middlewares(verifier: AdminVerifier) -> list[object]:
    @web.middleware
    async def authenticate_and_map_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if CONSOLE in request.app and is_console_path(request.path):  # the console answers
            return await handler(request)
        request_id = f"admin-{uuid.uuid4().hex[:16]}"
        request[REQUEST_ID] = request_id
        try:
            if request.path.startswith("/api/"):
                try:
                    request[ADMIN] = await verifier.admin(request.headers, now=time.time())
                except AuthenticationError as exc:
                    _log.warning(
                        "admin api refused: unauthenticated",
                        extra={
                            "fields": {
                                "reason": exc.reason,
                                "peer": request.remote,
                                "request_id": request_id,
                            }
                        },
                    )
                    raise _UNAUTHENTICATED from None
                except NotAnAdmin:
                    raise _FORBIDDEN from None
            response = await handler(request)
        except Exception as exc:  # noqa: BLE001 - every error becomes a problem document
            response = problem_response(_problem_for(exc, request), request_id)
        response.headers["X-Request-Id"] = request_id
        admin = request.get(ADMIN)
        _log.info(  # who read or changed what: the path only (a query may name a person)
            "admin api request",
            extra={
                "fields": {
                    "request_id": request_id,
                    "method": request.method,
                    "path": request.path,
                    "status": response.status,
                    "admin": None if admin is None else str(admin.subject),
                    "peer": request.remote,
                }
            },
        )
        return response

    return [authenticate_and_map_errors]


def build_admin_api_app(
    settings: Settings,
    *,
    config_path: Path,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    current_identity: Callable[[], IdentitySettings] | None = None,
    console_key: bytes | None = None,
) -> web.Application:
    """The admin API application for `settings` (config_path: audit trail, review, report).

    `current_identity`: the proxy's identity settings now (serve passes the runtime's, so a
    reload reaches admin tokens too); default: those of `settings`. `console_key`: the key
    sealing the console's cookies (serve makes one before starting workers, so all share it);
    without one the console makes its own.
    """
    identity = current_identity or (lambda: settings.identity)
    verifier = AdminVerifier(identity, settings.admin_api)
    middlewares = [console_middleware, *_middlewares(verifier)]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY)  # type: ignore[arg-type]
    context = ApiContext(settings=settings, config_path=config_path, clock=clock)
    app[CONTEXT] = context
    console = settings.admin_api.console
    if console.enabled:
        from proxy.console.app import add_console  # noqa: PLC0415 - only when enabled

        add_console(
            app,
            console,
            api=context,
            verifier=verifier,
            current_identity=identity,
            key=console_key,
        )

    async def resources(_app: web.Application) -> AsyncIterator[None]:
        context.store = open_grant_store(settings.grants, application_name="phi-proxy-admin-api")
        try:
            yield
        finally:
            await context.store.close()
            await verifier.close()

    app.cleanup_ctx.append(resources)
    document = render_openapi()

    async def openapi(_request: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/openapi.json", openapi)
    add_routes(app.router)
    return app

"""The console's middleware: session, error pages and security headers on every console URL.

It wraps every request whose path is /console or starts with /console/ (the admin API's JSON
paths pass through untouched): it opens the session cookie, turns "not logged in" into the login
page (or 403 for a POST), every error into a page in plain words, and sets the security headers
(proxy.console.headers) on whatever is answered, error pages and static files included.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Final

from aiohttp import web
from yarl import URL

from keys.errors import ConfigError
from proxy.audit.errors import AuditError
from proxy.console.context import CONSOLE, PREFIX, REQUEST_ID, SESSION
from proxy.console.errors import ConsoleProblem, Forbidden
from proxy.console.headers import add_security_headers
from proxy.console.pages import render
from proxy.console.session import SESSION_COOKIE, LoginRequired, open_session
from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["console_middleware", "is_console_path"]

_log = logging.getLogger("phi_proxy.console")


def is_console_path(path: str) -> bool:
    """True for /console and everything under /console/."""
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def _problem(exc: Exception) -> ConsoleProblem:  # noqa: PLR0911 - one answer per kind of error
    if isinstance(exc, ConsoleProblem):
        return exc
    if isinstance(exc, GrantNotFound):
        return ConsoleProblem(404, "Nothing matched", f"{exc}")
    if isinstance(exc, GrantError):
        return ConsoleProblem(422, "The change was refused", f"{exc}. Nothing was changed.")
    if isinstance(exc, GrantStoreUnavailable | sqlite3.Error):
        _log.error("console: grant store unavailable", extra={"fields": {"error": str(exc)}})
        return ConsoleProblem(
            503,
            "Grants cannot be read right now",
            "The grant store is not answering, so nothing was read or changed. Try again in a "
            "few minutes; if it persists, tell your IT team (the proxy's log has the details).",
        )
    if isinstance(exc, ConfigError | AuditError):
        _log.error("console: audit trail unreadable", extra={"fields": {"error": str(exc)}})
        return ConsoleProblem(
            503,
            "The audit trail cannot be read right now",
            f"{exc}. Tell your IT team; nothing was changed.",
        )
    if isinstance(exc, web.HTTPMethodNotAllowed | web.HTTPNotFound):
        return ConsoleProblem(
            404, "No such page", "This address is not a page of the console. Use the menu above."
        )
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ConsoleProblem(413, "Too much text", "The form was too large; nothing was changed.")
    _log.error("console: unexpected error", exc_info=exc)
    return ConsoleProblem(
        500,
        "Something went wrong",
        "The console failed to answer. Nothing is known to have changed; check before retrying. "
        "Your IT team will find the details in the proxy's log.",
    )


#: Console paths answered without a session: logging in and out, the home redirect, and the
#: stylesheet and script. Every other console path needs one, checked here before any view
#: runs, so a view that forgot `require_session` still shows nothing to a stranger.
_PUBLIC: Final = frozenset(
    {
        PREFIX,
        f"{PREFIX}/",
        f"{PREFIX}/login",
        f"{PREFIX}/login/start",
        f"{PREFIX}/callback",
        f"{PREFIX}/logout",
    }
)


def _require_login(path: str, session: object) -> None:
    """LoginRequired for a console path other than `_PUBLIC` (and static files) with no session."""
    if session is None and path not in _PUBLIC and not path.startswith(f"{PREFIX}/static/"):
        raise LoginRequired


def _login_redirect(request: web.Request) -> web.Response:
    target = URL(f"{PREFIX}/login").with_query(next=request.path)
    return web.Response(status=303, headers={"Location": str(target)})


@web.middleware
async def console_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Session, error pages and security headers for console paths; others pass through."""
    if not is_console_path(request.path) or CONSOLE not in request.app:
        return await handler(request)
    request[REQUEST_ID] = f"console-{uuid.uuid4().hex[:16]}"
    context = request.app[CONSOLE]
    session = open_session(context.sealer, request.cookies.get(SESSION_COOKIE), now=time.time())
    if session is not None:
        request[SESSION] = session
    response: web.StreamResponse
    try:
        _require_login(request.path, session)
        response = await handler(request)
    except LoginRequired:
        if request.method == "GET":
            response = _login_redirect(request)
        else:
            response = render(request, "error.html", status=403, **_page(Forbidden("no_session")))
    except Exception as exc:  # noqa: BLE001 - every error becomes a page
        problem = _problem(exc)
        if isinstance(problem, Forbidden):
            _log.warning(
                "console request refused",
                extra={
                    "fields": {
                        "reason": problem.reason,
                        "path": request.path,
                        "peer": request.remote,
                        "request_id": request[REQUEST_ID],
                    }
                },
            )
        response = render(request, "error.html", status=problem.status, **_page(problem))
    add_security_headers(response)
    response.headers["X-Request-Id"] = request[REQUEST_ID]
    _log.info(  # who looked at or changed what: the path only (a query may name a person)
        "console request",
        extra={
            "fields": {
                "request_id": request[REQUEST_ID],
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "admin": None if session is None else session.subject,
                "peer": request.remote,
                "pid": os.getpid(),  # with --workers N: which worker answered
            }
        },
    )
    return response


def _page(problem: ConsoleProblem) -> dict[str, object]:
    return {"title": problem.title, "problem": problem}

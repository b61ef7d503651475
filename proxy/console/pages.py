"""What a console view needs to answer a request: the session, the form, the page.

The extension point for views (docs/console.md, "Adding a view"):
- `require_session(request)`: the logged-in administrator (AdminIdentity), or a redirect to
  the login page; `actor(request)`: the same, as the Actor that proxy.admin_api.operations
  audit changes under (`via: console`, the console request id and the token's jti);
- `await checked_form(request)`: the POSTed form once proxy.console.csrf.check_csrf passed
  (403 otherwise);
- `render(request, "template.html", **values)`: a page from proxy/console/templates, extending
  base.html (navigation, the person logged in, the CSRF field for forms);
- `redirect(path)`: a 303 to another console page;
- `await audited_read(request, what, filters)`: before a page shows who saw which records,
  the read is recorded in the audit trail (503, nothing shown, when it cannot be).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy.admin_api.operations import Actor, ReadNotAudited, record_read
from proxy.console.context import CONSOLE, REQUEST_ID, SESSION
from proxy.console.csrf import CSRF_FIELD, check_csrf
from proxy.console.errors import ConsoleProblem
from proxy.console.nav import NAV
from proxy.console.session import LoginRequired

if TYPE_CHECKING:
    from multidict import MultiDictProxy

    from proxy.admin_api.auth import AdminIdentity
    from proxy.console.session import Session

__all__ = ["actor", "audited_read", "checked_form", "redirect", "render", "require_session"]

_log = logging.getLogger("phi_proxy.console")
#: Form bodies are a few fields; anything larger is refused before it is parsed.
MAX_FORM = 16 * 1024


def require_session(request: web.Request) -> AdminIdentity:
    """The logged-in administrator; LoginRequired (→ the login page) when there is none."""
    session: Session | None = request.get(SESSION)
    if session is None:
        raise LoginRequired
    return session.identity


def actor(request: web.Request) -> Actor:
    """The administrator as the actor of an audited change made through the console."""
    identity = require_session(request)
    via = {"via": "console", "console_request": request[REQUEST_ID], "token_id": identity.token_id}
    return Actor(identity, via)


async def audited_read(request: web.Request, what: str, filters: dict[str, str]) -> None:
    """Record that this administrator is about to see who-saw-what evidence, or refuse (503).

    As the admin API's audit report does (proxy.admin_api.operations.record_read): the read is
    in the trail before the page is, with `via: console`.
    """
    try:
        await record_read(request.app[CONSOLE].api, actor(request), what, filters)
    except ReadNotAudited as exc:
        raise ConsoleProblem(
            503,
            "Not shown: this page could not be recorded in the audit trail",
            f"Looking at who saw which records is itself recorded, and the audit trail could not "
            f"be written ({exc.error}). Nothing was shown. Ask the proxy's operator to fix the "
            "audit trail, then reload this page.",
        ) from None


async def checked_form(request: web.Request) -> MultiDictProxy[str | bytes | object]:
    """The POSTed form of a logged-in administrator, after the CSRF and Origin checks."""
    require_session(request)
    form: MultiDictProxy[Any] = await request.post()
    check_csrf(request, form)
    return form


def render(
    request: web.Request,
    template: str,
    *,
    status: int = 200,
    **values: Any,  # noqa: ANN401 - whatever the template shows
) -> web.Response:
    """The page `template` (from proxy/console/templates) filled with `values`, as HTML."""
    context = request.app[CONSOLE]
    session = request.get(SESSION)
    page = context.templates.get_template(template).render(
        nav=NAV,
        path=request.path,
        session=session,
        csrf_field=CSRF_FIELD,
        csrf=None if session is None else session.csrf,
        **values,
    )
    return web.Response(text=page, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    """303 See Other to `location` (a path of this console)."""
    if not location.startswith("/console") or location.startswith("//"):
        raise ValueError(f"redirect outside the console: {location!r}")
    return web.Response(status=303, headers={"Location": location})

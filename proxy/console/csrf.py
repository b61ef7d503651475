"""Cross-site request forgery: every change is a POST from a console page of the same session.

Two independent checks, both required (403 otherwise, nothing changed):
- the Origin header is exactly the console's public origin (from console.oidc.redirect_uri):
  browsers set it on every POST and pages of another site cannot forge it;
- the form's `csrf` field equals the secret sealed in this session's cookie (compared in
  constant time): a page that cannot read the console cannot know it.
The session cookie is also SameSite=Strict, so another site's form would arrive without it.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Final

from proxy.console.context import CONSOLE, SESSION
from proxy.console.errors import Forbidden

if TYPE_CHECKING:
    from aiohttp import web
    from multidict import MultiDictProxy

__all__ = ["CSRF_FIELD", "check_csrf"]

#: The hidden form field carrying the session's CSRF secret (templates: `csrf_field()`).
CSRF_FIELD: Final = "csrf"


def check_csrf(request: web.Request, form: MultiDictProxy[str | bytes | object]) -> None:
    """Forbidden unless `request` is a POST from a console page of the current session."""
    if request.method != "POST":
        raise Forbidden("not_post")
    origin = request.headers.getall("Origin", [])
    expected = request.app[CONSOLE].oidc.origin
    if len(origin) != 1 or origin[0] != expected:
        raise Forbidden("origin")
    session = request.get(SESSION)
    if session is None:
        raise Forbidden("no_session")
    sent = form.getall(CSRF_FIELD, [])
    if len(sent) != 1 or not isinstance(sent[0], str):
        raise Forbidden("csrf_missing")
    if not hmac.compare_digest(sent[0].encode(), session.csrf.encode()):
        raise Forbidden("csrf_mismatch")

"""Logging in and out: OpenID Connect authorization code flow with PKCE (S256), state and nonce.

1. /console/login/start makes a fresh state, nonce and PKCE verifier, seals them in a short-lived
   login cookie (SameSite=Lax: it must come back on the IdP's redirect) and sends the browser to
   the IdP's authorization endpoint with the S256 challenge.
2. The IdP sends the browser to /console/callback with a code. The state must equal the sealed
   one (login CSRF); the code is exchanged at the token endpoint with the verifier (a stolen
   code is useless without it) using aiohttp's client; the login cookie is dropped.
3. The access token is judged by the admin API's own AdminVerifier: same JWKS, issuer, audience
   and role claim as a bearer token on /api/v1. The ID token must verify for the client id and
   carry the nonce. A person without the admin role is refused (403) and gets no session.
4. The session cookie (proxy.console.session) ends with the token, or after
   console.session_minutes, whichever is first. The token itself is then dropped: the browser
   never holds it, and the proxy keeps only its jti (for the audit trail).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web
from yarl import URL

from proxy.admin_api.auth import NotAnAdmin
from proxy.console.context import CONSOLE, PREFIX, SESSION
from proxy.console.errors import ConsoleProblem
from proxy.console.pages import checked_form, redirect, render
from proxy.console.session import Session, clear_cookie, set_cookie
from proxy.identity.errors import AuthenticationError

if TYPE_CHECKING:
    from proxy.console.context import ConsoleContext

__all__ = ["LOGIN_COOKIE", "add_routes", "safe_next"]

_log = logging.getLogger("phi_proxy.console")

LOGIN_COOKIE: Final = "__Host-phi-console-login"
_PURPOSE: Final = "phi-console login v1"
#: How long a person has at the IdP between "Log in" and coming back.
LOGIN_SECONDS: Final = 600
#: The largest token endpoint answer read (tokens are a few KB).
_MAX_TOKEN_RESPONSE: Final = 256 * 1024
_HOME: Final = f"{PREFIX}/grants"
#: A longer "next" is not a console page (and would not fit in the login cookie).
_MAX_NEXT: Final = 256


def safe_next(value: str | None) -> str:
    """Where to go after login: a console path only (never another site), else the home view."""
    if not value or len(value) > _MAX_NEXT:
        return _HOME
    parts = urlsplit(value)
    path = parts.path
    if (
        parts.scheme
        or parts.netloc
        or not path.startswith(f"{PREFIX}/")
        or "//" in path
        or "\\" in value
        or path.startswith((f"{PREFIX}/login", f"{PREFIX}/callback"))
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)  # noqa: PLR2004 - controls, space
    ):
        return _HOME
    return path


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def login_page(request: web.Request) -> web.Response:
    """GET /console/login: who this is for and a "Log in" button (or on to the console)."""
    target = safe_next(request.query.get("next"))
    if request.get(SESSION) is not None:
        return redirect(target)
    return render(
        request,
        "login.html",
        title="Log in",
        start=str(URL(f"{PREFIX}/login/start").with_query(next=target)),
        logged_out="logged_out" in request.query,
    )


async def login_start(request: web.Request) -> web.Response:
    """GET /console/login/start: off to the IdP with a fresh state, nonce and PKCE challenge."""
    context = request.app[CONSOLE]
    oidc = context.oidc
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(48)  # 64 characters (RFC 7636: 43-128)
    sealed = context.sealer.seal(
        _PURPOSE,
        {
            "state": state,
            "nonce": nonce,
            "verifier": verifier,
            "next": safe_next(request.query.get("next")),
            "until": time.time() + LOGIN_SECONDS,
        },
    )
    target = URL(oidc.authorization_endpoint).update_query(
        response_type="code",
        client_id=oidc.client_id,
        redirect_uri=oidc.redirect_uri,
        scope=" ".join(oidc.scopes),
        state=state,
        nonce=nonce,
        code_challenge=_challenge(verifier),
        code_challenge_method="S256",
    )
    response = web.Response(status=303, headers={"Location": str(target)})
    response.set_cookie(
        LOGIN_COOKIE,
        sealed,
        max_age=LOGIN_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="Lax",
    )
    return response


def _refused(title: str, text: str, status: int = 401) -> ConsoleProblem:
    return ConsoleProblem(status, title, text)


_TRY_AGAIN = "Nothing was changed. Go back to the login page and log in again."


async def _tokens(context: ConsoleContext, code: str, verifier: str) -> dict[str, Any]:
    """The token endpoint's answer to `code` (+ the PKCE verifier), or ConsoleProblem."""
    oidc = context.oidc
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": oidc.redirect_uri,
        "client_id": oidc.client_id,
        "code_verifier": verifier,
    }
    auth = (
        None
        if context.client_secret is None
        else aiohttp.BasicAuth(oidc.client_id, context.client_secret)
    )
    try:
        async with context.client().post(
            oidc.token_endpoint,
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=aiohttp.ClientTimeout(total=oidc.timeout_seconds),
            allow_redirects=False,
        ) as answer:
            raw = await answer.content.read(_MAX_TOKEN_RESPONSE + 1)
            status = answer.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        _log.warning(
            "console login: token endpoint unreachable", extra={"fields": {"error": str(exc)}}
        )
        raise _refused(
            "The identity provider did not answer",
            "The console could not reach the identity provider's token endpoint to finish the "
            f"login. {_TRY_AGAIN} If it keeps failing, tell your IT team (the proxy's log says "
            "why).",
            502,
        ) from None
    try:
        data = orjson.loads(raw) if len(raw) <= _MAX_TOKEN_RESPONSE else None
    except orjson.JSONDecodeError:
        data = None
    if status != 200 or not isinstance(data, dict):  # noqa: PLR2004
        error = data.get("error") if isinstance(data, dict) else None
        _log.warning(
            "console login: token endpoint refused the code",
            extra={"fields": {"status": status, "error": str(error)[:100] if error else None}},
        )
        raise _refused(
            "The identity provider refused the login",
            "The login could not be completed (the sign-in code was refused or expired). "
            f"{_TRY_AGAIN}",
            502,
        )
    return data


async def callback(request: web.Request) -> web.Response:
    """GET /console/callback: check state, exchange the code, judge the tokens, start a session."""
    context = request.app[CONSOLE]
    now = time.time()
    pending = context.sealer.open(_PURPOSE, request.cookies.get(LOGIN_COOKIE))
    state = request.query.get("state", "")
    if (
        pending is None
        or float(pending.get("until", 0)) <= now
        or not hmac.compare_digest(str(pending.get("state", "")).encode(), state.encode())
    ):
        raise _refused(
            "This login link is not valid here",
            "The answer from the identity provider does not belong to a login started in this "
            f"browser in the last {LOGIN_SECONDS // 60} minutes. {_TRY_AGAIN}",
            400,
        )
    if "error" in request.query or "code" not in request.query:
        _log.warning(
            "console login: the IdP answered with an error",
            extra={"fields": {"error": request.query.get("error", "no code")[:100]}},
        )
        raise _refused(
            "The identity provider did not log you in",
            f"The identity provider ended the login without signing you in. {_TRY_AGAIN}",
        )
    tokens = await _tokens(context, request.query["code"], str(pending["verifier"]))
    access, id_token = tokens.get("access_token"), tokens.get("id_token")
    if not isinstance(access, str) or not isinstance(id_token, str):
        raise _refused(
            "The identity provider's answer was incomplete",
            f"It must return an access token and an ID token (scope openid). {_TRY_AGAIN}",
            502,
        )
    try:
        identity, token_expires = await context.verifier.admin_token(access, now=now)
        await context.id_tokens.check(
            id_token, nonce=str(pending["nonce"]), subject=str(identity.subject), now=now
        )
    except NotAnAdmin:
        raise _refused(
            "You are not a console administrator",
            "You signed in at the identity provider, but your account does not have the "
            "administrator role this console requires. Nothing was shown or changed. Ask your "
            "identity provider's administrator to assign the role if you should have it.",
            403,
        ) from None
    except AuthenticationError as exc:
        _log.warning("console login: token refused", extra={"fields": {"reason": exc.reason}})
        raise _refused(
            "The login could not be verified",
            f"The identity provider's tokens did not pass the proxy's checks. {_TRY_AGAIN}",
        ) from None
    expires_at = min(token_expires, now + context.settings.session_minutes * 60)
    session = Session.start(identity, expires_at=expires_at)
    target = safe_next(str(pending.get("next")))
    _log.info(
        "console login",
        extra={"fields": {"admin": session.subject, "token_id": session.token_id}},
    )
    # A page, not a redirect: the navigation on from here starts on the console itself, so the
    # browser sends the new SameSite=Strict cookie with it even when the IdP is another site.
    response = render(request, "logged_in.html", title="Logged in", target=target)
    set_cookie(response, context.sealer, session, now=now)
    clear_cookie(response, LOGIN_COOKIE)
    return response


async def logout(request: web.Request) -> web.Response:
    """POST /console/logout: drop the session cookie (CSRF-checked like every change).

    Without a session (it expired) there is nothing to protect: the cookie is dropped anyway.
    """
    if request.get(SESSION) is not None:
        await checked_form(request)
    response = redirect(f"{PREFIX}/login?logged_out=1")
    clear_cookie(response)
    return response


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The login, callback and logout routes."""
    router.add_get(f"{PREFIX}/login", login_page)
    router.add_get(f"{PREFIX}/login/start", login_start)
    router.add_get(f"{PREFIX}/callback", callback)
    router.add_post(f"{PREFIX}/logout", logout)

"""The console session: who is logged in, until when, and the secret their forms must carry.

A session is a sealed cookie (proxy.console.sealing), `__Host-` prefixed, Secure, HttpOnly,
SameSite=Strict, Path=/: scripts cannot read it, other sites cannot make the browser send it,
and no subdomain can set or shadow it. It holds the administrator's subject, the jti of the
admin token the login produced (audited with every change), the expiry and the CSRF secret.
The browser never holds the token itself. A session ends at the earlier of the token's expiry
and `console.session_minutes` after login; after that every page asks for a new login.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.admin_api.auth import AdminIdentity
from proxy.identity.subject import Subject

if TYPE_CHECKING:
    from aiohttp import web

    from proxy.console.sealing import Sealer

__all__ = [
    "SESSION_COOKIE",
    "LoginRequired",
    "Session",
    "clear_cookie",
    "open_session",
    "set_cookie",
]

SESSION_COOKIE: Final = "__Host-phi-console"
_PURPOSE: Final = "phi-console session v1"


class LoginRequired(Exception):
    """No valid session: a page asks the person to log in (the middleware redirects)."""


@dataclass(frozen=True, slots=True)
class Session:
    """One logged-in administrator."""

    subject: str  # ISSUER|SUB, as the audit trail and grant history write it
    token_id: str | None  # the admin token's jti
    expires_at: float  # epoch seconds
    csrf: str  # the secret every form of this session carries

    @classmethod
    def start(cls, identity: AdminIdentity, *, expires_at: float) -> Session:
        """A new session for `identity` with a fresh CSRF secret."""
        return cls(str(identity.subject), identity.token_id, expires_at, secrets.token_urlsafe(32))

    @property
    def identity(self) -> AdminIdentity:
        """The administrator, as the admin API's handlers know one."""
        return AdminIdentity(Subject.parse(self.subject), self.token_id)


def open_session(sealer: Sealer, cookie: str | None, *, now: float) -> Session | None:
    """The session in `cookie`, or None when it is missing, forged or expired."""
    data = sealer.open(_PURPOSE, cookie)
    if data is None:
        return None
    try:
        session = Session(
            subject=str(data["s"]),
            token_id=None if data["j"] is None else str(data["j"]),
            expires_at=float(data["e"]),
            csrf=str(data["c"]),
        )
        Subject.parse(session.subject)
    except (KeyError, TypeError, ValueError):
        return None
    return session if now < session.expires_at else None


def set_cookie(
    response: web.StreamResponse, sealer: Sealer, session: Session, *, now: float
) -> None:
    """Put `session` in `response` as the console's session cookie (expiring with it)."""
    sealed = sealer.seal(
        _PURPOSE,
        {"s": session.subject, "j": session.token_id, "e": session.expires_at, "c": session.csrf},
    )
    response.set_cookie(
        SESSION_COOKIE,
        sealed,
        max_age=max(int(session.expires_at - now), 0),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_cookie(response: web.StreamResponse, name: str = SESSION_COOKIE) -> None:
    """Tell the browser to drop cookie `name` (same attributes, so it matches)."""
    response.set_cookie(
        name, "", max_age=0, path="/", secure=True, httponly=True, samesite="Strict"
    )

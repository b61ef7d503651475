"""A small but real OpenID Connect provider for the console tests (authorization code + PKCE).

/authorize approves the configured test user at once (no login form) and redirects back with a
one-time code; /token checks client_id, redirect_uri and the PKCE verifier (S256) before it
issues an access token (audience: the proxy's, with the user's roles) and an ID token (audience:
the client id, with the nonce), both signed by the test issuer whose JWKS the proxy trusts.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

CLIENT_ID = "phi-console-tests"


@dataclass
class User:
    sub: str
    roles: list[str]


@dataclass
class Pending:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    user: User


@dataclass
class LocalIdp:
    """The provider's state: who it logs in, the codes it issued, what it was asked."""

    issuer: Any  # DemoIssuer: signs the tokens; its JWKS is the proxy's identity.jwks_file
    audience: str  # the access token's audience (the proxy's identity.audience)
    redirect_uri: str
    user: User
    token_ttl: float = 600
    #: Put another nonce in the ID token (a replayed ID token, for the tests).
    wrong_nonce: bool = False
    codes: dict[str, Pending] = field(default_factory=dict)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    server: TestServer | None = None

    @property
    def base(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def _refuse(self, why: str, status: int = 400) -> web.Response:
        self.refusals.append(why)
        return web.json_response({"error": why}, status=status)

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("redirect_uri") != self.redirect_uri:
            return self._refuse("unauthorized_client")
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256":
            return self._refuse("invalid_request")
        if not q.get("state") or not q.get("nonce") or not q.get("code_challenge"):
            return self._refuse("invalid_request")
        if "openid" not in q.get("scope", "").split():
            return self._refuse("invalid_scope")
        code = secrets.token_urlsafe(24)
        self.codes[code] = Pending(
            CLIENT_ID, q["redirect_uri"], q["code_challenge"], q["nonce"], self.user
        )
        target = URL(q["redirect_uri"]).update_query(code=code, state=q["state"])
        return web.Response(status=302, headers={"Location": str(target)})

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        pending = self.codes.pop(str(form.get("code", "")), None)  # one use only
        if pending is None or form.get("grant_type") != "authorization_code":
            return self._refuse("invalid_grant")
        if form.get("client_id") != pending.client_id:
            return self._refuse("invalid_client", 401)
        if form.get("redirect_uri") != pending.redirect_uri:
            return self._refuse("invalid_grant")
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != pending.challenge:
            return self._refuse("invalid_grant")
        now = datetime.now(UTC).timestamp()
        user = pending.user
        access = self.issuer.mint(
            user.sub, now=now, ttl=self.token_ttl, audience=self.audience, roles=user.roles
        )
        id_token = self.issuer.mint(
            user.sub,
            now=now,
            ttl=self.token_ttl,
            audience=CLIENT_ID,
            nonce="another-login" if self.wrong_nonce else pending.nonce,
        )
        return web.json_response(
            {
                "access_token": access,
                "id_token": id_token,
                "token_type": "Bearer",
                "expires_in": int(self.token_ttl),
            },
            headers={"Cache-Control": "no-store"},
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        return app

    async def start(self) -> None:
        self.server = TestServer(self.app(), host="127.0.0.1")
        await self.server.start_server()

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()

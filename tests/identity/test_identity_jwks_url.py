import asyncio
import json

import pytest
import pytest_asyncio
from aiohttp import web
from identity_helpers import ISSUER
from multidict import CIMultiDict

from proxy.identity import AuthenticationError, JwtAuthenticator, Subject, build_authenticator

pytestmark = pytest.mark.asyncio


def bearer(token):
    """Headers carrying `token` as a bearer token."""
    return CIMultiDict({"Authorization": f"Bearer {token}"})


@pytest_asyncio.fixture
async def jwks_server(aiohttp_server, es_issuer):
    """A real local HTTP server publishing the JWKS and counting downloads."""
    state = {"fetches": 0, "status": 200, "body": json.dumps(es_issuer.jwks())}

    async def handler(_request):
        state["fetches"] += 1
        return web.Response(status=state["status"], text=state["body"])

    app = web.Application()
    app.router.add_get("/jwks", handler)
    server = await aiohttp_server(app)
    state["url"] = str(server.make_url("/jwks"))
    return state


class TestJwksUrl:
    async def test_valid_token_via_url(self, make_settings, jwks_server, es_issuer, now):
        """A token verifies against keys downloaded from jwks_url; one download serves many."""
        auth = build_authenticator(make_settings(jwks_file=None, jwks_url=jwks_server["url"]))
        try:
            for i in range(20):
                token = es_issuer.mint(f"u{i}", now=now)
                caller = await auth.authenticate(bearer(token), now=now + i)
                assert caller.subject == Subject(ISSUER, f"u{i}")
        finally:
            await auth.close()
        assert jwks_server["fetches"] == 1

    async def test_thousand_unknown_kids_bounded_fetches(
        self, make_settings, jwks_server, es_issuer, now
    ):
        """1,000 concurrent tokens with unknown kids cause at most 2 downloads in total."""
        auth = JwtAuthenticator(make_settings(jwks_file=None, jwks_url=jwks_server["url"]))
        tokens = [es_issuer.mint("u", now=now, kid=f"forged-{i}") for i in range(1000)]

        async def attempt(token, offset):
            with pytest.raises(AuthenticationError, match="unknown_key"):
                await auth.authenticate(bearer(token), now=now + offset)

        try:
            await asyncio.gather(*(attempt(t, i % 30) for i, t in enumerate(tokens)))
        finally:
            await auth.close()
        assert jwks_server["fetches"] <= 2
        assert auth.jwks_fetch_count == jwks_server["fetches"]

    async def test_server_error_fails_closed_and_is_rate_limited(
        self, make_settings, jwks_server, es_issuer, now
    ):
        """While the JWKS URL answers 500, every token is refused and retries wait the interval."""
        jwks_server["status"] = 500
        auth = JwtAuthenticator(make_settings(jwks_file=None, jwks_url=jwks_server["url"]))
        token = es_issuer.mint("u", now=now)
        try:
            for _ in range(50):
                with pytest.raises(AuthenticationError) as info:
                    await auth.authenticate(bearer(token), now=now)
                assert info.value.reason == "jwks_unavailable"
            assert jwks_server["fetches"] == 1
            jwks_server["status"] = 200
            caller = await auth.authenticate(bearer(token), now=now + 61)
            assert caller.subject == Subject(ISSUER, "u")
        finally:
            await auth.close()
        assert jwks_server["fetches"] == 2


class TestKeyRemoval:
    async def test_a_key_the_idp_removed_stops_verifying_after_max_age(
        self, make_settings, jwks_server, es_issuer, now
    ):
        """No unknown kid needed: keys older than jwks_max_age_seconds are fetched again.

        Found in review: a removed (compromised) key kept verifying fresh tokens indefinitely.
        """
        settings = make_settings(jwks_file=None, jwks_url=jwks_server["url"])
        auth = build_authenticator(settings.model_copy(update={"jwks_max_age_seconds": 300.0}))
        try:
            await auth.authenticate(bearer(es_issuer.mint("u", now=now)), now=now)
            jwks_server["body"] = json.dumps({"keys": []})  # the IdP drops the key
            later = now + 299
            await auth.authenticate(bearer(es_issuer.mint("v", now=later)), now=later)
            expired = now + 301
            with pytest.raises(AuthenticationError, match="unknown_key"):
                await auth.authenticate(bearer(es_issuer.mint("w", now=expired)), now=expired)
        finally:
            await auth.close()
        assert jwks_server["fetches"] == 2

    async def test_a_clock_stepped_back_does_not_block_refreshes(
        self, make_settings, jwks_server, es_issuer, rs_issuer, now
    ):
        """A new signing key is fetched even when the wall clock went back an hour."""
        auth = build_authenticator(make_settings(jwks_file=None, jwks_url=jwks_server["url"]))
        try:
            await auth.authenticate(bearer(es_issuer.mint("u", now=now)), now=now)
            jwks_server["body"] = json.dumps({"keys": [rs_issuer.public_jwk()]})
            back = now - 3600
            caller = await auth.authenticate(bearer(rs_issuer.mint("r", now=back)), now=back)
            assert caller.subject == Subject(ISSUER, "r")
        finally:
            await auth.close()

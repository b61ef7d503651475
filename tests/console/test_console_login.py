"""The console's OpenID Connect login over HTTP (no browser): what is checked, and what it gives.

The admin API app with the console is served by aiohttp's TestServer; the test OpenID provider
(console_idp) runs beside it. The tests walk the redirects by hand, carrying the cookies.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from blackbox_env import AUDIENCE, running_proxy_env
from console_idp import LocalIdp
from console_stack import ADMIN, console_overrides
from hypothesis import given
from hypothesis import strategies as st

from proxy.admin_api.app import build_admin_api_app
from proxy.console.login import LOGIN_COOKIE, safe_next
from proxy.console.session import SESSION_COOKIE

REDIRECT = "http://127.0.0.1:9/console/callback"  # as configured; never bound


@pytest.fixture
async def login_env(tmp_path):
    """(base URL, idp): the admin API app with the console, and the IdP it logs in at."""
    idp = LocalIdp(issuer=None, audience=AUDIENCE, redirect_uri=REDIRECT, user=ADMIN)
    await idp.start()
    section = console_overrides(9, idp.base, session_minutes=30)
    section["port"] = 0
    async with running_proxy_env(
        tmp_path, overrides={"admin_api": section, "audit": {"flush_interval": 20}}
    ) as env:
        idp.issuer = env.issuer
        app = build_admin_api_app(env.settings, config_path=env.config_path)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        yield str(server.make_url("")).rstrip("/"), idp
        await server.close()
    await idp.close()


async def _start(http, base) -> tuple[str, dict]:
    """GET /console/login/start: the IdP URL it sends the browser to, and the login cookie."""
    async with http.get(base + "/console/login/start", allow_redirects=False) as response:
        assert response.status == 303
        return response.headers["Location"], {LOGIN_COOKIE: response.cookies[LOGIN_COOKIE].value}


async def _authorize(http, url) -> dict[str, str]:
    async with http.get(url, allow_redirects=False) as response:
        assert response.status == 302, await response.text()
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        return {k: v[0] for k, v in query.items()}


async def _callback(http, base, params, cookies):
    async with http.get(
        base + "/console/callback", params=params, cookies=cookies, allow_redirects=False
    ) as response:
        return response.status, await response.text(), response.cookies


async def test_a_login_sends_pkce_s256_state_and_nonce_and_yields_a_strict_session(login_env):
    base, idp = login_env
    async with aiohttp.ClientSession() as http:
        target, cookies = await _start(http, base)
        query = parse_qs(urlsplit(target).query)
        assert query["code_challenge_method"] == ["S256"]
        assert len(query["code_challenge"][0]) == 43
        assert len(query["state"][0]) >= 40
        assert len(query["nonce"][0]) >= 40
        assert query["redirect_uri"] == [REDIRECT]
        params = await _authorize(http, target)
        status, body, set_cookies = await _callback(http, base, params, cookies)
    assert status == 200, body
    assert "Continue to the console" in body
    session = set_cookies[SESSION_COOKIE]
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Strict"
    assert set_cookies[LOGIN_COOKIE]["max-age"] == "0"  # the login cookie is dropped
    [request] = idp.token_requests
    assert len(request["code_verifier"]) >= 43
    assert "access_token" not in body  # the browser never sees the token


@pytest.mark.parametrize(("token_ttl", "longest"), [(120, 120), (7200, 30 * 60)])
async def test_a_session_ends_with_the_token_or_session_minutes_whichever_is_first(
    login_env, token_ttl, longest
):
    base, idp = login_env
    idp.token_ttl = token_ttl
    async with aiohttp.ClientSession() as http:
        target, cookies = await _start(http, base)
        params = await _authorize(http, target)
        status, _, set_cookies = await _callback(http, base, params, cookies)
    assert status == 200
    assert 0 < int(set_cookies[SESSION_COOKIE]["max-age"]) <= longest


async def test_a_callback_with_another_state_is_refused_without_a_session(login_env):
    base, _idp = login_env
    async with aiohttp.ClientSession() as http:
        target, cookies = await _start(http, base)
        params = await _authorize(http, target)
        params["state"] = "someone-elses-state"
        status, body, set_cookies = await _callback(http, base, params, cookies)
    assert status == 400
    assert "not valid here" in body
    assert SESSION_COOKIE not in set_cookies


async def test_a_callback_without_the_login_cookie_is_refused(login_env):
    base, _idp = login_env
    async with aiohttp.ClientSession() as http:
        target, _cookies = await _start(http, base)
        params = await _authorize(http, target)
        status, _, set_cookies = await _callback(http, base, params, {})
    assert status == 400
    assert SESSION_COOKIE not in set_cookies


async def test_a_code_the_idp_refuses_gives_no_session(login_env):
    base, idp = login_env
    async with aiohttp.ClientSession() as http:
        target, cookies = await _start(http, base)
        params = await _authorize(http, target)
        params["code"] = "not-a-code-it-issued"
        status, body, set_cookies = await _callback(http, base, params, cookies)
    assert status == 502
    assert "refused the login" in body
    assert idp.refusals == ["invalid_grant"]
    assert SESSION_COOKIE not in set_cookies


async def test_an_id_token_with_another_nonce_gives_no_session(login_env):
    base, idp = login_env
    idp.wrong_nonce = True
    async with aiohttp.ClientSession() as http:
        target, cookies = await _start(http, base)
        params = await _authorize(http, target)
        status, body, set_cookies = await _callback(http, base, params, cookies)
    assert status == 401
    assert "could not be verified" in body
    assert SESSION_COOKIE not in set_cookies


async def test_the_idp_ending_the_login_with_an_error_gives_no_session(login_env):
    base, _idp = login_env
    async with aiohttp.ClientSession() as http:
        target, cookies = await _start(http, base)
        state = parse_qs(urlsplit(target).query)["state"][0]
        status, body, set_cookies = await _callback(
            http, base, {"error": "access_denied", "state": state}, cookies
        )
    assert status == 401
    assert "did not log you in" in body
    assert SESSION_COOKIE not in set_cookies


@given(st.text(max_size=60))
def test_after_login_the_browser_only_ever_goes_to_a_console_page(value):
    target = safe_next(value)
    assert target.startswith("/console/")
    assert "//" not in target
    assert "\\" not in target
    assert not target.startswith(("/console/login", "/console/callback"))
    assert all(0x21 <= ord(c) != 0x7F for c in target)


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.test.invalid/console/grants",
        "//evil.test.invalid/console/grants",
        "/console//evil.test.invalid",
        "/console/\\\\evil",
        "/console/login/start",
        "/elsewhere",
        "javascript:alert(1)",
        "/console/" + "a" * 300,
    ],
)
def test_a_foreign_next_becomes_the_grants_page(value):
    assert safe_next(value) == "/console/grants"


def test_a_console_next_is_kept():
    assert safe_next("/console/review") == "/console/review"

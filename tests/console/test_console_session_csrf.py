"""Sessions and CSRF without a browser: sealed cookies, expiry, and what a change needs.

The admin API application with the console is served by aiohttp's TestServer with a known
cookie key, so the tests can seal sessions (and forge or age them) the way a worker would.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from blackbox_env import break_the_trail, running_proxy_env
from console_stack import console_overrides

from proxy.admin_api.app import build_admin_api_app
from proxy.admin_api.auth import AdminIdentity
from proxy.console.headers import CONTENT_SECURITY_POLICY
from proxy.console.sealing import Sealer, new_key
from proxy.console.session import SESSION_COOKIE, Session, open_session, set_cookie
from proxy.grants import GrantRequest
from proxy.identity import Subject

ORIGIN = "http://127.0.0.1:9"  # the console's configured origin (redirect_uri); never bound
ADMIN = AdminIdentity(Subject("https://idp.test.invalid", "officer-olivia"), "jti-1")


class TestSealing:
    def test_a_sealed_session_opens_with_the_same_key_only(self):
        key = new_key()
        session = Session.start(ADMIN, expires_at=time.time() + 60)
        response = aiohttp.web.Response()
        set_cookie(response, Sealer(key), session, now=time.time())
        sealed = response.cookies[SESSION_COOKIE].value
        assert open_session(Sealer(key), sealed, now=time.time()) == session
        assert open_session(Sealer(new_key()), sealed, now=time.time()) is None

    def test_a_changed_byte_or_another_purpose_opens_nothing(self):
        sealer = Sealer(new_key())
        sealed = sealer.seal("phi-console session v1", {"s": "x|y", "j": None, "e": 1e12, "c": "c"})
        assert sealer.open("phi-console session v1", sealed) is not None
        flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
        assert sealer.open("phi-console session v1", flipped) is None
        assert sealer.open("phi-console login v1", sealed) is None
        assert sealer.open("phi-console session v1", "") is None
        assert sealer.open("phi-console session v1", "not base64 !!") is None
        assert sealer.open("phi-console session v1", "A" * 5000) is None

    def test_a_session_is_closed_at_its_expiry(self):
        sealer = Sealer(new_key())
        now = time.time()
        session = Session.start(ADMIN, expires_at=now + 60)
        response = aiohttp.web.Response()
        set_cookie(response, sealer, session, now=now)
        sealed = response.cookies[SESSION_COOKIE].value
        assert open_session(sealer, sealed, now=now + 59) == session
        assert open_session(sealer, sealed, now=now + 60) is None

    def test_the_cookie_is_host_only_secure_httponly_strict_and_expires_with_the_session(self):
        now = time.time()
        response = aiohttp.web.Response()
        set_cookie(response, Sealer(new_key()), Session.start(ADMIN, expires_at=now + 300), now=now)
        morsel = response.cookies[SESSION_COOKIE]
        assert SESSION_COOKIE.startswith("__Host-")
        assert morsel["secure"] is True
        assert morsel["httponly"] is True
        assert morsel["samesite"] == "Strict"
        assert morsel["path"] == "/"
        assert not morsel["domain"]
        assert 0 < int(morsel["max-age"]) <= 300

    def test_each_session_has_its_own_csrf_secret(self):
        first = Session.start(ADMIN, expires_at=time.time() + 60)
        second = Session.start(ADMIN, expires_at=time.time() + 60)
        assert first.csrf != second.csrf
        assert len(first.csrf) >= 40


@pytest.fixture
async def console_app(tmp_path):
    """(env, base URL, key): the admin API app with the console, served with a known key."""
    overrides = console_overrides(9, "http://127.0.0.1:9")
    overrides["port"] = 0
    async with running_proxy_env(
        tmp_path, overrides={"admin_api": overrides, "audit": {"flush_interval": 20}}
    ) as env:
        key = new_key()
        app = build_admin_api_app(env.settings, config_path=env.config_path, console_key=key)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        yield env, str(server.make_url("")).rstrip("/"), key
        await server.close()


def _cookie(key: bytes, *, expires_in: float = 600, csrf: str = "s3cret-" * 6) -> dict:
    session = Session(str(ADMIN.subject), ADMIN.token_id, time.time() + expires_in, csrf)
    response = aiohttp.web.Response()
    set_cookie(response, Sealer(key), session, now=time.time())
    return {SESSION_COOKIE: response.cookies[SESSION_COOKIE].value}


async def _grant(env) -> str:
    now = datetime.now(UTC)
    grant = await env.grants.add(
        GrantRequest(
            subject=env.subject("dora"),
            practice="practice-a",
            field_classes=None,
            expires_at=now + timedelta(days=3),
            created_by="tests",
            reason="csrf test",
        ),
        now=now,
    )
    return grant.id


async def _post(base, path, *, cookies, data, origin: str | None = ORIGIN):
    headers = {} if origin is None else {"Origin": origin}
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.post(base + path, data=data, headers=headers, allow_redirects=False) as response,
    ):
        return response.status, await response.text(), response.headers


class TestCsrf:
    async def test_a_change_without_the_csrf_field_is_403_and_changes_nothing(self, console_app):
        env, base, key = console_app
        grant_id = await _grant(env)
        status, body, headers = await _post(
            base,
            f"/console/grants/{grant_id}/revoke",
            cookies=_cookie(key),
            data={"reason": "no csrf field here", "confirm": "yes"},
        )
        assert status == 403
        assert "Nothing was changed" in body
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        assert [g.revoked_at for g in await env.grants.list() if g.id == grant_id] == [None]

    async def test_a_wrong_csrf_value_is_403(self, console_app):
        env, base, key = console_app
        grant_id = await _grant(env)
        status, _, _ = await _post(
            base,
            f"/console/grants/{grant_id}/revoke",
            cookies=_cookie(key, csrf="right-" * 7),
            data={"csrf": "wrong-" * 7, "reason": "wrong csrf value", "confirm": "yes"},
        )
        assert status == 403
        assert [g.revoked_at for g in await env.grants.list() if g.id == grant_id] == [None]

    @pytest.mark.parametrize("origin", [None, "null", "http://evil.test.invalid", ORIGIN + "0"])
    async def test_a_missing_or_foreign_origin_is_403_even_with_the_right_csrf(
        self, console_app, origin
    ):
        env, base, key = console_app
        grant_id = await _grant(env)
        csrf = "right-" * 7
        status, _, _ = await _post(
            base,
            f"/console/grants/{grant_id}/revoke",
            cookies=_cookie(key, csrf=csrf),
            data={"csrf": csrf, "reason": "foreign origin", "confirm": "yes"},
            origin=origin,
        )
        assert status == 403
        assert [g.revoked_at for g in await env.grants.list() if g.id == grant_id] == [None]

    async def test_the_right_csrf_and_origin_revoke_audited_via_console(self, console_app):
        env, base, key = console_app
        grant_id = await _grant(env)
        csrf = "right-" * 7
        status, body, _ = await _post(
            base,
            f"/console/grants/{grant_id}/revoke",
            cookies=_cookie(key, csrf=csrf),
            data={"csrf": csrf, "reason": "left the practice", "confirm": "yes"},
        )
        assert status == 200, body
        [grant] = [g for g in await env.grants.list() if g.id == grant_id]
        assert grant.revoked_at is not None
        assert grant.revoked_by == str(ADMIN.subject)
        trail = (env.folder / "audit.jsonl").read_text()
        assert '"via":"console"' in trail.replace(" ", "")
        assert grant_id in trail

    async def test_without_a_session_a_post_is_403_and_a_page_asks_to_log_in(self, console_app):
        env, base, _key = console_app
        grant_id = await _grant(env)
        status, _, _ = await _post(
            base,
            f"/console/grants/{grant_id}/revoke",
            cookies={},
            data={"reason": "no session", "confirm": "yes"},
        )
        assert status == 403
        async with (
            aiohttp.ClientSession() as http,
            http.get(base + "/console/grants", allow_redirects=False) as response,
        ):
            assert response.status == 303
            assert response.headers["Location"] == "/console/login?next=/console/grants"

    async def test_an_expired_or_foreign_session_is_no_session(self, console_app):
        _env, base, key = console_app
        for cookies in (_cookie(key, expires_in=-1), _cookie(new_key())):
            async with (
                aiohttp.ClientSession(cookies=cookies) as http,
                http.get(base + "/console/grants", allow_redirects=False) as response,
            ):
                assert response.status == 303


class TestNotAudited:
    async def test_a_revoke_the_trail_cannot_record_says_it_was_made_and_alerts(
        self, console_app, caplog
    ):
        env, base, key = console_app
        grant_id = await _grant(env)
        await break_the_trail(env)
        csrf = "right-" * 7
        status, body, _ = await _post(
            base,
            f"/console/grants/{grant_id}/revoke",
            cookies=_cookie(key, csrf=csrf),
            data={"csrf": csrf, "reason": "left the practice", "confirm": "yes"},
        )
        assert status == 500
        assert "NOT recorded in the audit trail" in body
        assert f"The change WAS made ({grant_id})" in body
        [alert] = [r for r in caplog.records if r.getMessage() == "admin_change_not_audited"]
        assert alert.fields["via"] == "console"
        assert alert.fields["console_request"].startswith("console-")
        [stored] = [g for g in await env.grants.list() if g.id == grant_id]
        assert stored.revoked_at is not None


class TestRenewRefusals:
    async def _renew(self, base, key, grant_id):
        csrf = "right-" * 7
        return await _post(
            base,
            f"/console/grants/{grant_id}/renew",
            cookies=_cookie(key, csrf=csrf),
            data={"csrf": csrf, "reason": "renew it please", "ttl": "30d", "confirm": "yes"},
        )

    async def test_a_revoked_grant_is_not_renewed(self, console_app):
        env, base, key = console_app
        grant_id = await _grant(env)
        await env.grants.revoke(
            grant_id=grant_id,
            subject=None,
            practice=None,
            by="tests",
            reason="gone",
            now=datetime.now(UTC),
        )
        status, body, _ = await self._renew(base, key, grant_id)
        assert status == 409
        assert "already ended" in body
        assert len(await env.grants.list(subject=env.subject("dora"))) == 1

    async def test_an_emergency_grant_is_not_renewed(self, console_app):
        env, base, key = console_app
        now = datetime.now(UTC)
        opened = await env.grants.open_break_glass(
            GrantRequest(
                subject=env.subject("erik"),
                practice="practice-a",
                field_classes=None,
                expires_at=now + timedelta(hours=1),
                created_by="break-glass",
                reason="patient unconscious, history needed now",
            ),
            now=now,
            max_per_day=5,
        )
        status, body, _ = await self._renew(base, key, opened.grant.id)
        assert status == 409
        assert "cannot be renewed" in body
        assert len(await env.grants.list(subject=env.subject("erik"))) == 1


async def _get(base, path, *, cookies, params=None):
    async with (
        aiohttp.ClientSession(cookies=cookies) as http,
        http.get(base + path, params=params, allow_redirects=False) as response,
    ):
        return response.status, await response.text()


def _admin_reads(env) -> list[dict]:
    lines = (env.folder / "audit.jsonl").read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e["type"] == "admin_read"]


class TestEvidenceReadsAreAudited:
    @pytest.mark.parametrize(
        ("path", "what"),
        [
            ("/console/incident", "incident_view"),
            ("/console/incident.csv", "incident_export"),
            ("/console/break-glass", "break_glass_queue"),
        ],
    )
    async def test_looking_at_who_saw_what_is_recorded_first(self, console_app, path, what):
        """Each evidence page puts the admin, the filters and `via: console` in the trail."""
        env, base, key = console_app
        nurse = str(env.subject("nurse"))
        params = {"subject": nurse, "since": "2026-01-01"} if "incident" in path else None
        status, _ = await _get(base, path, cookies=_cookie(key), params=params)
        assert status == 200
        [read] = _admin_reads(env)
        assert (read["action"], read["actor"]) == (what, str(ADMIN.subject))
        assert read["details"]["via"] == "console"
        assert read["details"]["console_request"].startswith("console-")
        expected = {"subject": nurse, "since": "2026-01-01T00:00:00.000Z"} if params else {}
        assert read["details"]["filters"] == expected

    async def test_an_evidence_page_the_trail_cannot_record_shows_nothing(
        self, console_app, caplog
    ):
        env, base, key = console_app
        await break_the_trail(env)
        params = {"subject": str(env.subject("nurse"))}
        status, body = await _get(base, "/console/incident", cookies=_cookie(key), params=params)
        assert status == 503
        assert "Nothing was shown" in body
        assert "Notification list" not in body
        assert any(r.getMessage() == "admin_read_not_audited" for r in caplog.records)


class TestEveryPageNeedsASession:
    async def test_no_console_route_but_login_and_static_answers_a_stranger(self, console_app):
        """Every registered console page sends a stranger to log in; every form post is 403."""
        env, base, _key = console_app
        app = build_admin_api_app(env.settings, config_path=env.config_path)
        public = {"/console", "/console/", "/console/login", "/console/login/start"}
        public |= {"/console/callback", "/console/logout", "/console/static/{name}"}
        routes = {
            (route.method, route.resource.canonical)
            for route in app.router.routes()
            if route.resource is not None and route.resource.canonical.startswith("/console")
        }
        checked = 0
        for method, canonical in sorted(routes):
            if canonical in public or method == "HEAD":
                continue
            path = canonical.replace("{grant_id}", "g_0000000000000000").replace(
                "{action:revoke|renew}", "revoke"
            )
            async with (
                aiohttp.ClientSession() as http,
                http.request(method, base + path, allow_redirects=False) as response,
            ):
                if method == "GET":
                    assert response.status == 303, (method, canonical)
                    assert response.headers["Location"].startswith("/console/login"), canonical
                else:
                    assert response.status == 403, (method, canonical)
            checked += 1
        assert checked >= 8  # grants, review, break-glass, incident pages and their forms

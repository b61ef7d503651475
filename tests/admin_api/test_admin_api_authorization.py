"""Who may use the admin API: admin role from a trusted IdP only, and never PHI because of it."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from admin_helpers import ADMIN_SUB, ROLE

from proxy.identity import DemoIssuer

SSN = "900-55-1234"


def _problem(status, body, headers, expected_status, code):
    assert status == expected_status, body
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["type"] == f"urn:phi-proxy:admin-api:problem:{code}"
    assert body["status"] == expected_status
    assert body["detail"]
    assert body["request_id"] == headers["X-Request-Id"]


class TestAuthentication:
    async def test_no_token_is_401_problem_with_bearer_challenge(self, admin_env):
        """Without a token every endpoint answers 401 problem+json and a Bearer challenge."""
        _env, api = admin_env
        for method, path in (("GET", "/api/v1/grants"), ("POST", "/api/v1/grants/offboard")):
            status, body, headers = await api.call(method, path, {"x": 1}, token=None)
            _problem(status, body, headers, 401, "unauthenticated")
            assert headers["WWW-Authenticate"].startswith("Bearer")

    async def test_admin_token_is_accepted_and_named(self, admin_env):
        """A token carrying the admin role is an administrator, named by its iss|sub."""
        env, api = admin_env
        status, body, _ = await api.call("GET", "/api/v1/whoami")
        assert status == 200
        assert body == {"subject": str(env.subject(ADMIN_SUB)), "role_claim": "roles", "role": ROLE}

    async def test_expired_admin_token_is_refused(self, admin_env):
        """An admin token past its exp (beyond the leeway) is 401, whatever its roles."""
        env, api = admin_env
        old = datetime.now(UTC).timestamp() - 3600
        token = env.issuer.mint(ADMIN_SUB, now=old, ttl=600, roles=[ROLE])
        status, body, headers = await api.call("GET", "/api/v1/whoami", token=token)
        _problem(status, body, headers, 401, "unauthenticated")

    async def test_token_from_a_foreign_issuer_is_refused(self, admin_env):
        """A token from an issuer the config does not trust is 401, even with the admin role."""
        env, api = admin_env
        foreign = DemoIssuer(issuer="https://evil.test.invalid", audience=env.issuer.audience)
        token = foreign.mint(ADMIN_SUB, now=datetime.now(UTC).timestamp(), roles=[ROLE])
        status, body, headers = await api.call("GET", "/api/v1/grants", token=token)
        _problem(status, body, headers, 401, "unauthenticated")

    async def test_token_signed_by_a_foreign_key_for_our_issuer_is_refused(self, admin_env):
        """A token claiming our issuer but signed by a key not in the JWKS is 401."""
        env, api = admin_env
        forger = DemoIssuer(
            issuer=env.issuer.issuer, audience=env.issuer.audience, kid=env.issuer.kid
        )
        token = forger.mint(ADMIN_SUB, now=datetime.now(UTC).timestamp(), roles=[ROLE])
        status, body, headers = await api.call("GET", "/api/v1/grants", token=token)
        _problem(status, body, headers, 401, "unauthenticated")

    async def test_a_role_given_as_another_claim_does_not_count(self, admin_env):
        """Only admin_api.role_claim is read: the role under `groups` makes nobody an admin."""
        env, api = admin_env
        token = env.issuer.mint(
            ADMIN_SUB, now=datetime.now(UTC).timestamp(), roles=["reader"], groups=[ROLE]
        )
        status, body, headers = await api.call("GET", "/api/v1/grants", token=token)
        _problem(status, body, headers, 403, "not-an-admin")


class TestAdminAndPhiAreSeparate:
    async def test_a_phi_grantee_is_not_an_admin(self, admin_env):
        """A caller with an active grant for every field gets 403 from the admin API."""
        env, api = admin_env
        await env.grant("nurse", "practice-a")
        token = env.token("nurse")
        for method, path, body in (
            ("GET", "/api/v1/grants", None),
            ("GET", "/api/v1/review", None),
            (
                "POST",
                "/api/v1/grants",
                {
                    "subject": str(env.subject("nurse")),
                    "practice": "practice-b",
                    "ttl": "1d",
                    "reason": "self-service",
                },
            ),
        ):
            status, answer, headers = await api.call(method, path, body, token=token)
            _problem(status, answer, headers, 403, "not-an-admin")
        assert [g.practice for g in await env.grants.list(subject=env.subject("nurse"))] == [
            "practice-a"
        ]

    async def test_an_admin_is_not_a_phi_grantee(self, admin_env):
        """The admin's token on the proxy port gets masked PHI; a grant holder gets plaintext."""
        env, api = admin_env
        record = {
            "id": 7,
            "practice_id": "practice-a",
            "ssn": env.encrypt("practice-a", "ssn", SSN),
        }
        env.portal.script("/api/patients/7", orjson.dumps(record))
        admin = {"Authorization": f"Bearer {api.admin_token()}"}
        response = await env.get("/api/patients/7", headers=admin)
        assert response.status == 200
        body = await response.read()
        assert SSN.encode() not in body
        assert orjson.loads(body)["ssn"] == "***-**-1234"
        await env.grant("nurse", "practice-a")
        granted = await env.get("/api/patients/7", sub="nurse")
        assert orjson.loads(await granted.read())["ssn"] == SSN


@pytest.mark.parametrize(
    "admin_api_section",
    [
        {
            "enabled": True,
            "port": 0,
            "role_claim": "realm_access.roles",
            "role": "phi-admin",
            "audience": "phi-proxy-admin",
        }
    ],
)
class TestKeycloakStyleClaimAndOwnAudience:
    async def test_nested_role_claim_and_admin_audience(self, admin_env):
        """realm_access.roles is read as a dotted path; the admin audience is required."""
        env, api = admin_env
        now = datetime.now(UTC).timestamp()
        good = env.issuer.mint(
            ADMIN_SUB, now=now, audience="phi-proxy-admin", realm_access={"roles": [ROLE]}
        )
        status, _, _ = await api.call("GET", "/api/v1/whoami", token=good)
        assert status == 200
        proxy_audience = env.issuer.mint(ADMIN_SUB, now=now, realm_access={"roles": [ROLE]})
        status, body, headers = await api.call("GET", "/api/v1/whoami", token=proxy_audience)
        _problem(status, body, headers, 401, "unauthenticated")
        flat = env.issuer.mint(ADMIN_SUB, now=now, audience="phi-proxy-admin", roles=[ROLE])
        status, body, headers = await api.call("GET", "/api/v1/whoami", token=flat)
        _problem(status, body, headers, 403, "not-an-admin")


class TestIdentityReload:
    async def test_an_issuer_removed_by_a_reload_is_refused_at_once(self, admin_env):
        """Admin tokens follow the proxy's current identity settings, not those at start."""
        import aiohttp
        from aiohttp.test_utils import TestServer

        from proxy.admin_api.app import build_admin_api_app

        env, api = admin_env
        current = [env.settings.identity]
        app = build_admin_api_app(
            env.settings, config_path=env.config_path, current_identity=lambda: current[0]
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        headers = {"Authorization": f"Bearer {api.admin_token()}"}
        try:
            async with aiohttp.ClientSession() as http:
                url = str(server.make_url("/api/v1/whoami"))
                async with http.get(url, headers=headers) as response:
                    assert response.status == 200
                current[0] = env.settings.identity.model_copy(
                    update={"issuers": ("https://another-idp.test.invalid",)}
                )
                async with http.get(url, headers=headers) as response:
                    assert response.status == 401
        finally:
            await server.close()


class TestRequestLog:
    async def test_every_request_is_logged_with_the_admin_and_without_the_query(
        self, admin_env, caplog
    ):
        """Reads leave a log line naming the admin; refusals name none; queries stay out."""
        env, api = admin_env
        await api.call("GET", "/api/v1/grants", params={"subject": str(env.subject("nurse"))})
        await api.call("GET", "/api/v1/grants", token=None)
        lines = [r.fields for r in caplog.records if r.getMessage() == "admin api request"]
        assert [(f["path"], f["status"], f["admin"]) for f in lines] == [
            ("/api/v1/grants", 200, str(env.subject(ADMIN_SUB))),
            ("/api/v1/grants", 401, None),
        ]
        assert "nurse" not in str(lines)

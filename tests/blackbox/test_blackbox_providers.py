"""End to end: a second organisation's identity provider signs only for its own subjects.

The proxy trusts the suite's IdP (issuer `https://idp.test.invalid`) and, under
`identity.other_providers`, a partner IdP with its own JWKS. The partner's staff member holds a
grant for practice-a; a token minted with the suite IdP's key that claims to be that person must
not be honoured (it once was, when every issuer shared one JWKS).
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from blackbox_env import AUDIENCE, running_proxy_env

from proxy.identity import DemoIssuer

PARTNER = "https://idp.partner.test.invalid"
SSN = "900-12-3456"


@pytest.fixture
async def partner_env(tmp_path):
    partner = DemoIssuer(issuer=PARTNER, audience=AUDIENCE, algorithm="RS256", kid="partner-1")
    partner.write_jwks(tmp_path / "partner-jwks.json")
    identity = {
        "issuers": ["https://idp.test.invalid"],
        "audience": AUDIENCE,
        "jwks_file": "./jwks.json",
        "other_providers": [{"issuers": [PARTNER], "jwks_file": "./partner-jwks.json"}],
    }
    async with running_proxy_env(tmp_path, overrides={"identity": identity}) as env:
        await env.grant("locum-7", "practice-a", issuer=PARTNER)
        token = env.encrypt("practice-a", "ssn", SSN, deterministic=True)
        doc = {"patient_id": "p1", "practice_id": "practice-a", "ssn": token}
        env.portal.script("/api/patients/p1", orjson.dumps(doc))
        yield env, partner


async def ssn_seen(env, token: str) -> tuple[int, object]:
    response = await env.get("/api/patients/p1", headers={"Authorization": f"Bearer {token}"})
    body = orjson.loads(await response.read())
    return response.status, body.get("ssn")


async def test_the_partners_own_token_decrypts(partner_env):
    env, partner = partner_env
    now = datetime.now(UTC).timestamp()
    assert await ssn_seen(env, partner.mint("locum-7", now=now)) == (200, SSN)


async def test_our_idps_key_cannot_speak_for_the_partners_staff(partner_env):
    env, _ = partner_env
    forged = env.token("locum-7", issuer=PARTNER)  # signed by the suite IdP's key
    status, ssn = await ssn_seen(env, forged)
    assert status == 401
    assert ssn is None

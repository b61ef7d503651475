"""Bearer tokens at the edges, black-box: a real proxy, a real portal, tokens signed for real.

Before issue 17 (item 7) a 400-digit time claim answered 500, other spellings of a signed token
verified, and a token signed with a ROCA-weak key from the JWKS was accepted.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import jwt
import orjson
import pytest
from blackbox_env import AUDIENCE, PLANTED
from jwt.algorithms import RSAAlgorithm
from weak_rsa_key import roca_private_key

SSN = "900-17-0007"
PLANTED.add(SSN)
PATIENT = "/api/practices/practice-a/patients/17"
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _serve_patient(env) -> None:
    doc = {"id": 17, "practice_id": "practice-a", "ssn": env.encrypt("practice-a", "ssn", SSN)}
    env.portal.script(PATIENT, orjson.dumps(doc))


def _access_outcome(caplog, request_id: str) -> str:
    (line,) = [
        r.fields
        for r in caplog.records
        if r.name == "phi_proxy.access" and r.fields["request_id"] == request_id
    ]
    return line["outcome"]


async def _refused(env, caplog, token: str) -> str:
    """GET the patient with `token`: it must be a 401 from the proxy; returns the logged reason."""
    response = await env.get(PATIENT, headers={"Authorization": f"Bearer {token}"})
    body = json.loads(await response.read())
    assert response.status == 401
    assert body["error"] == "unauthenticated"
    assert SSN.encode() not in await response.read()
    return _access_outcome(caplog, body["request_id"])


class TestTimeClaims:
    @pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
    async def test_time_claim_too_large_for_a_clock_is_refused_with_401(
        self, proxy_env, caplog, claim
    ):
        """A signed 400-digit exp/iat/nbf gets 401 `bad_<claim>` in the access log, not a 500."""
        await proxy_env.grant("alice", "practice-a")
        _serve_patient(proxy_env)
        token = proxy_env.token("alice", **{claim: 10**400})
        assert await _refused(proxy_env, caplog, token) == f"unauthenticated:bad_{claim}"


class TestSpelling:
    @pytest.mark.parametrize(
        ("respell", "reason"),
        [
            (lambda sig: sig + "==", "noncanonical_encoding"),
            (
                lambda sig: sig[:-1] + ALPHABET[ALPHABET.index(sig[-1]) | 0b1111],
                "noncanonical_encoding",
            ),
            (lambda sig: sig[:20] + "!!!!" + sig[20:], "malformed"),
        ],
        ids=["padding", "spare-bits", "junk"],
    )
    async def test_only_the_issued_spelling_of_a_token_is_accepted(
        self, proxy_env, caplog, respell, reason
    ):
        """The token as issued decrypts; the same signature spelled otherwise gets 401.

        Padding and spare bits verified before issue 17; junk characters were already refused
        by PyJWT and are pinned here with the proxy's own reason.
        """
        await proxy_env.grant("alice", "practice-a")
        _serve_patient(proxy_env)
        token = proxy_env.token("alice")
        head, _, signature = token.rpartition(".")
        issued = await proxy_env.get(PATIENT, headers={"Authorization": f"Bearer {token}"})
        assert json.loads(await issued.read())["ssn"] == SSN
        outcome = await _refused(proxy_env, caplog, f"{head}.{respell(signature)}")
        assert outcome == f"unauthenticated:{reason}"


class TestWeakSigningKey:
    async def test_token_signed_with_a_roca_key_from_the_jwks_is_refused_and_logged(
        self, proxy_env, caplog
    ):
        """A JWKS key with the ROCA fingerprint verifies nothing; the log names its kid and why."""
        weak = roca_private_key()
        jwk = {
            **RSAAlgorithm.to_jwk(weak.public_key(), as_dict=True),
            "kid": "hsm-2016",
            "use": "sig",
            "alg": "RS256",
        }
        issuer = proxy_env.issuer
        issuer.write_jwks(proxy_env.folder / "jwks.json", {"keys": [issuer.public_jwk(), jwk]})
        await proxy_env.grant("alice", "practice-a")
        _serve_patient(proxy_env)
        now = int(datetime.now(UTC).timestamp())
        claims = {
            "iss": issuer.issuer,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
        }
        token = jwt.encode(claims, weak, algorithm="RS256", headers={"kid": "hsm-2016"})
        assert await _refused(proxy_env, caplog, token) == "unauthenticated:weak_key"
        (warning,) = [r for r in caplog.records if r.name == "proxy.identity.jwks"]
        assert "'hsm-2016' refused" in warning.getMessage()
        assert "ROCA" in warning.getMessage()
        sound = await proxy_env.get(PATIENT, sub="alice")
        assert json.loads(await sound.read())["ssn"] == SSN

"""Several identity providers, each with its own JWKS: one provider's keys never sign for another.

With one JWKS for every listed issuer (found in review), a key of clinic A's IdP could mint a
token claiming clinic B's issuer and inherit the grants of B's staff. `identity.other_providers`
gives each provider its own keys; the unverified `iss` only picks which keys to check against.
"""

import pytest
import yaml
from identity_helpers import AUDIENCE
from multidict import CIMultiDict
from pydantic import ValidationError

from keys.config_file import load_section
from proxy.identity import AuthenticationError, DemoIssuer, IdentitySettings, Subject
from proxy.identity.authenticator import IssuerRouter, build_authenticator

CLINIC_A = "https://idp.clinic-a.test"
CLINIC_B = "https://idp.clinic-b.test"


def bearer(token):
    return CIMultiDict({"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def idp_a():
    return DemoIssuer(issuer=CLINIC_A, audience=AUDIENCE, algorithm="ES256", kid="a-1")


@pytest.fixture(scope="module")
def idp_b():
    return DemoIssuer(issuer=CLINIC_B, audience=AUDIENCE, algorithm="RS256", kid="b-1")


@pytest.fixture
def config(tmp_path, idp_a, idp_b):
    """A config naming each clinic's IdP with its own JWKS file (relative paths)."""
    idp_a.write_jwks(tmp_path / "a-jwks.json")
    idp_b.write_jwks(tmp_path / "b-jwks.json")
    path = tmp_path / "proxy.yaml"
    identity = {
        "issuers": [CLINIC_A],
        "audience": AUDIENCE,
        "jwks_file": "a-jwks.json",
        "other_providers": [{"issuers": [CLINIC_B], "jwks_file": "b-jwks.json"}],
    }
    path.write_text(yaml.safe_dump({"identity": identity}))
    return path


@pytest.fixture
async def router(config):
    auth = build_authenticator(load_section(config, "identity", IdentitySettings))
    assert isinstance(auth, IssuerRouter)
    yield auth
    await auth.close()


async def refused(auth, token, now):
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(bearer(token), now=now)
    return info.value.reason


async def test_each_provider_signs_for_its_own_issuer(router, idp_a, idp_b, now):
    caller = await router.authenticate(bearer(idp_a.mint("a-staff", now=now)), now=now)
    assert caller.subject == Subject(CLINIC_A, "a-staff")
    caller = await router.authenticate(bearer(idp_b.mint("b-staff", now=now)), now=now)
    assert caller.subject == Subject(CLINIC_B, "b-staff")


async def test_a_key_of_one_provider_cannot_sign_for_the_other(router, idp_a, idp_b, now):
    """A's key, `iss` B, B's subject: checked against B's keys only, so refused."""
    forged = idp_a.mint("b-staff", now=now, issuer=CLINIC_B)
    assert await refused(router, forged, now) in {"unknown_key", "bad_signature"}
    forged_with_b_kid = idp_a.mint("b-staff", now=now, issuer=CLINIC_B, kid="b-1")
    assert await refused(router, forged_with_b_kid, now) in {
        "bad_signature",
        "algorithm_not_allowed",
        "unknown_key",
    }


async def test_unknown_or_missing_issuer_is_refused(router, idp_a, now):
    assert await refused(router, idp_a.mint("x", now=now, issuer="https://evil.test"), now) == (
        "wrong_issuer"
    )
    assert await refused(router, idp_a.mint("x", now=now, omit=("iss",)), now) == "missing_iss"
    assert await refused(router, "not.a.jwt", now) == "malformed"


async def test_no_token_is_anonymous_and_header_rules_still_apply(router, now):
    assert (await router.authenticate(CIMultiDict(), now=now)).subject is None
    headers = CIMultiDict([("Authorization", "Bearer a"), ("Authorization", "Bearer b")])
    with pytest.raises(AuthenticationError) as info:
        await router.authenticate(headers, now=now)
    assert info.value.reason == "ambiguous_authorization"


def test_an_issuer_belongs_to_one_provider_only(tmp_path):
    (tmp_path / "j.json").write_text('{"keys": []}')
    with pytest.raises(ValidationError, match="exactly one JWKS"):
        IdentitySettings.model_validate(
            {
                "issuers": [CLINIC_A],
                "audience": AUDIENCE,
                "jwks_file": tmp_path / "j.json",
                "other_providers": [{"issuers": [CLINIC_A], "jwks_file": tmp_path / "j.json"}],
            }
        )
    with pytest.raises(ValidationError, match="exactly one of jwks_file and jwks_url"):
        IdentitySettings.model_validate(
            {
                "issuers": [CLINIC_A],
                "audience": AUDIENCE,
                "jwks_file": tmp_path / "j.json",
                "other_providers": [{"issuers": [CLINIC_B]}],
            }
        )

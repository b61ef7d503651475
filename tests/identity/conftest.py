import time

import pytest
import pytest_asyncio
from identity_helpers import AUDIENCE, ISSUER

from proxy.identity import DemoIssuer, IdentitySettings, JwtAuthenticator


@pytest.fixture(scope="session")
def es_issuer():
    """An ES256 demo issuer."""
    return DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="ES256", kid="es-1")


@pytest.fixture(scope="session")
def rs_issuer():
    """An RS256 demo issuer."""
    return DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="RS256", kid="rs-1")


@pytest.fixture(scope="session")
def ed_issuer():
    """An EdDSA demo issuer."""
    return DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="EdDSA", kid="ed-1")


@pytest.fixture
def now():
    """A whole-second wall-clock time."""
    return float(int(time.time()))


@pytest.fixture
def jwks_path(tmp_path, es_issuer, rs_issuer, ed_issuer):
    """A JWKS file with the public keys of all three issuers."""
    path = tmp_path / "jwks.json"
    keys = [i.public_jwk() for i in (es_issuer, rs_issuer, ed_issuer)]
    es_issuer.write_jwks(path, {"keys": keys})
    return path


@pytest.fixture
def make_settings(jwks_path):
    """Build IdentitySettings for the test issuers, with overrides."""

    def make(**overrides):
        values = {"issuers": [ISSUER], "audience": AUDIENCE, "jwks_file": jwks_path}
        values.update(overrides)
        return IdentitySettings.model_validate(values)

    return make


@pytest_asyncio.fixture
async def auth(make_settings):
    """A JwtAuthenticator on the JWKS file, closed afterwards."""
    authenticator = JwtAuthenticator(make_settings())
    yield authenticator
    await authenticator.close()

"""Fixtures for the HSM and KMS KEK tests: a real SoftHSM2 token and a real KMS server.

One token and one moto server per test session, and a fresh key in them for each test.

Without SoftHSM2 (or moto) the tests that need it skip with the reason; CI sets
PHI_TEST_REQUIRE_SOFTHSM=1 and PHI_TEST_REQUIRE_KMS=1 to make that a failure instead.
SOFTHSM2_CONF is set for the whole session (SoftHSM2 reads it once, when the library starts).
"""

from __future__ import annotations

import os
import secrets

import pytest

from keys.testing_kek import create_softhsm_token, find_softhsm, kms_client_env, kms_server

REGION = "eu-central-1"
PIN_ENV = "PHI_PROXY_PKCS11_PIN"


def unavailable(reason: str, require_env: str) -> None:
    """Skip with `reason`, or fail when `require_env`=1 (CI)."""
    if os.environ.get(require_env) == "1":
        pytest.fail(f"{reason} ({require_env}=1 requires it)", pytrace=False)
    pytest.skip(f"{reason}; CI sets {require_env}=1 to make this a failure")


_SESSION_TOKEN: list = []  # one token per process, whichever test folder asks first


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory):
    """A throwaway SoftHSM2 token for this test session (SoftHsmToken).

    SOFTHSM2_CONF stays set for the rest of the process: the library reads it once, and every
    test folder that imports this fixture shares the one token set-up.
    """
    found = find_softhsm()
    if isinstance(found, str):
        unavailable(found, "PHI_TEST_REQUIRE_SOFTHSM")
    if not _SESSION_TOKEN:
        folder = tmp_path_factory.mktemp("softhsm")
        token = create_softhsm_token(
            folder, label=f"phi-test-{secrets.token_hex(4)}", pin=secrets.token_hex(8)
        )
        os.environ["SOFTHSM2_CONF"] = str(token.conf)
        _SESSION_TOKEN.append(token)
    return _SESSION_TOKEN[0]


def extra_token(session_token, prefix: str, pin: str = "2468"):
    """Another token beside the session's (same SOFTHSM2_CONF), for tests that break tokens."""
    return create_softhsm_token(
        session_token.conf.parent, label=f"{prefix}-{secrets.token_hex(3)}", pin=pin
    )


def pkcs11_config(token, key_label: str) -> dict:
    """The `keys.kek` mapping for a key in `token` (PIN from PHI_PROXY_PKCS11_PIN)."""
    return {
        "provider": "pkcs11",
        "module": str(token.module),
        "token_label": token.label,
        "key_label": key_label,
        "pin_env": PIN_ENV,
    }


@pytest.fixture
def pkcs11_kek(softhsm, monkeypatch):
    """A new KEK in the session's token: (keys.kek mapping, Pkcs11Kek)."""
    from keys.kek_pkcs11 import Pkcs11Kek, generate_pkcs11_kek, read_pin

    monkeypatch.setenv(PIN_ENV, softhsm.pin)
    label = f"kek-{secrets.token_hex(4)}"
    pin = read_pin(pin_env=PIN_ENV, pin_file=None, token_label=softhsm.label)
    generate_pkcs11_kek(module=softhsm.module, token_label=softhsm.label, key_label=label, pin=pin)
    kek = Pkcs11Kek(module=softhsm.module, token_label=softhsm.label, key_label=label, pin=pin)
    return pkcs11_config(softhsm, label), kek


@pytest.fixture(scope="session")
def kms_endpoint():
    """The KMS server (moto), a separate process on 127.0.0.1, for this test session (its URL)."""
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError:
        unavailable(
            "boto3 or moto[server] is not installed (pip install -e '.[dev]')",
            "PHI_TEST_REQUIRE_KMS",
        )
    with kms_server() as url:
        yield url


def new_kms_key(endpoint: str, *, alias: str | None = None) -> str:
    """Create a symmetric key in the test server; returns its ARN."""
    import boto3

    client = boto3.session.Session().client("kms", region_name=REGION, endpoint_url=endpoint)
    arn = client.create_key(Description="phi-proxy test KEK")["KeyMetadata"]["Arn"]
    if alias is not None:
        client.create_alias(AliasName=alias, TargetKeyId=arn)
    return arn


@pytest.fixture
def kms_env(kms_endpoint, monkeypatch):
    """boto3's environment for the test server (dummy credentials, no profile or metadata)."""
    for name, value in kms_client_env().items():
        monkeypatch.setenv(name, value)
    return kms_endpoint


@pytest.fixture
def aws_kms_kek(kms_env):
    """A new KMS key in the test server: (keys.kek mapping, AwsKmsKek)."""
    from keys.kek_aws_kms import AwsKmsKek

    kms_endpoint = kms_env
    arn = new_kms_key(kms_endpoint)
    config = {"provider": "aws-kms", "key_id": arn, "region": REGION, "endpoint_url": kms_endpoint}
    return config, AwsKmsKek(key_id=arn, region=REGION, endpoint_url=kms_endpoint)

"""`rotate-kek` to an HSM or a KMS while the proxy serves: same reload behaviour as between files.

Until the config names the new KEK, the running proxy refuses the reload (wrong KEK) and keeps
decrypting with its loaded keys; once the config is replaced, it reloads onto the new KEK.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

import pytest
import yaml
from lifecycle_helpers import run_keys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "keys"))
from kek_backends import PIN_ENV, REGION, new_kms_key, pkcs11_config
from kek_backends import kms_endpoint as kms_endpoint  # noqa: PLC0414 - a fixture
from kek_backends import softhsm as softhsm  # noqa: PLC0414 - a fixture

from keys.testing_kek import kms_client_env

SSN = "123-45-6789"
RECORD = {"patient_id": "p1", "ssn": SSN, "member_id": "M-1", "medical_history": "flu"}


@pytest.fixture
def kek_env(softhsm, kms_endpoint, monkeypatch):
    """The token's PIN and KMS credentials in this process's environment (phi-keys inherits)."""
    monkeypatch.setenv(PIN_ENV, softhsm.pin)
    for name, value in kms_client_env().items():
        monkeypatch.setenv(name, value)
    return softhsm, kms_endpoint


def _new_config(live, name: str, kek: dict) -> Path:
    config = yaml.safe_load(live.config.read_text())
    config["keys"]["kek"] = kek
    path = live.folder / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def test_file_to_hsm_to_kms_while_serving(live, kek_env):
    """Each move: reload refused until the config changes, then applied; values keep opening."""
    token, kms = kek_env
    assert await live.post_patient("practice-a", RECORD) == 201
    targets = [
        ("hsm.yaml", pkcs11_config(token, f"online-{secrets.token_hex(3)}"), ["--generate"]),
        (
            "kms.yaml",
            {"provider": "aws-kms", "key_id": new_kms_key(kms), "region": REGION}
            | {"endpoint_url": kms},
            [],
        ),
    ]
    current = live.config
    for name, kek, flags in targets:
        new_config = _new_config(live, name, kek)
        run_keys("rotate-kek", "--new-config", str(new_config), *flags, config=current, check=True)
        failures = live.reloader.failures
        await live.reloader.tick()  # the keystore changed; the config still names the old KEK
        assert live.reloader.failures == failures + 1
        assert (await live.get_patient("p1"))[1]["ssn"] == SSN  # loaded keys keep serving
        live.config.write_text(new_config.read_text())  # the operator replaces the config
        current = live.config
        await live.reloader.tick()
        assert live.runtime.settings.keys.kek.provider == kek["provider"]
        assert (await live.runtime.readiness())["kek"] is True
        assert (await live.get_patient("p1"))[1]["ssn"] == SSN
        assert await live.post_patient("practice-b", RECORD | {"patient_id": name}) == 201

"""`phi-keys init --kek-provider pkcs11` and `rotate-kek` between any two KEK providers.

Real processes (`phi-keys`), a real SoftHSM2 token, moto's KMS server: a keystore moves file →
pkcs11 → aws-kms → pkcs11 → file; after each move the new config opens it and the old tokens,
the old KEK opens only the `.bak` copy, and the audit trail records the move.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
import yaml
from kek_backends import PIN_ENV, REGION, new_kms_key, pkcs11_config

from keys.config_file import load_section
from keys.errors import KekError
from keys.kek import generate_kek_file
from keys.keystore import KeystoreFile
from keys.settings import KeySettings, kek_provider, keystore_file
from keys.testing_kek import kms_client_env
from proxy.audit.settings import AuditSettings
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

PHI_KEYS = Path(sys.executable).with_name("phi-keys")


def _write(folder: Path, name: str, kek: dict) -> Path:
    path = folder / name
    config = {"keys": {"keystore": "./keystore.json", "kek": kek}, "audit": {"fsync": False}}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _run(config: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return run_cli(
        [str(PHI_KEYS), "-c", str(config), *args],
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _store(config: Path) -> KeystoreFile:
    return keystore_file(load_section(config, "keys", KeySettings))


def _events(config: Path) -> list[dict]:
    path = load_section(config, "audit", AuditSettings).path
    return [
        e
        for e in (orjson.loads(line) for line in path.read_bytes().splitlines())
        if e["type"] == "key_change"
    ]


@pytest.fixture
def env(softhsm, kms_env, monkeypatch):
    """The environment `phi-keys` runs in: the token's folder and PIN, and KMS credentials."""
    monkeypatch.setenv(PIN_ENV, softhsm.pin)
    base = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
    return base | softhsm.env() | {PIN_ENV: softhsm.pin} | kms_client_env()


class TestInitInTheToken:
    def test_init_creates_the_key_then_the_keystore(self, tmp_path, softhsm, env):
        """`init --kek-provider pkcs11` makes the token key, then a keystore it opens."""
        label = f"init-{secrets.token_hex(3)}"
        config = _write(tmp_path, "proxy.yaml", pkcs11_config(softhsm, label))
        done = _run(config, "init", "--kek-provider", "pkcs11", env=env)
        assert done.returncode == 0, done.stderr
        assert f"created KEK '{label}' in token '{softhsm.label}'" in done.stdout
        assert "never extractable" in done.stdout
        assert _run(config, "add-practice", "p1", env=env).returncode == 0
        assert _store(config).load().practices() == {"p1"}
        [event] = [e for e in _events(config) if e["action"] == "init"]
        assert event["details"]["kek_provider"] == "pkcs11"

    def test_init_refuses_a_taken_label_and_changes_nothing(self, tmp_path, softhsm, env):
        """A second init on the same label is refused, and no keystore is written."""
        label = f"taken-{secrets.token_hex(3)}"
        first = _write(tmp_path, "first.yaml", pkcs11_config(softhsm, label))
        assert _run(first, "init", "--kek-provider", "pkcs11", env=env).returncode == 0
        other = tmp_path / "other"
        other.mkdir()
        second = _write(other, "proxy.yaml", pkcs11_config(softhsm, label))
        done = _run(second, "init", "--kek-provider", "pkcs11", env=env)
        assert done.returncode == 1
        assert "already holds a key labelled" in done.stderr
        assert not (other / "keystore.json").exists()

    def test_provider_must_match_the_config(self, tmp_path, env):
        """--kek-provider pkcs11 with a file KEK in the config is a usage error (exit 2)."""
        config = _write(tmp_path, "proxy.yaml", {"provider": "file", "path": "./kek.b64"})
        done = _run(config, "init", "--kek-provider", "pkcs11", env=env)
        assert done.returncode == 2
        assert "keys.kek.provider in the config is file" in done.stderr

    def test_a_kms_key_is_not_created_by_phi_keys(self, tmp_path, env, kms_endpoint):
        """--kek-provider aws-kms explains that KMS keys come from infrastructure tooling."""
        kek = {"provider": "aws-kms", "key_id": "alias/x", "region": REGION}
        config = _write(tmp_path, "proxy.yaml", kek | {"endpoint_url": kms_endpoint})
        done = _run(config, "init", "--kek-provider", "aws-kms", env=env)
        assert done.returncode == 2
        assert "kms:CreateKey" in done.stderr


class TestRotateKekAcrossProviders:
    def test_file_to_pkcs11_to_aws_kms_to_pkcs11_to_file(
        self, tmp_path, softhsm, env, kms_endpoint
    ):
        """Each move rewraps every key in one write; tokens keep opening; .bak per old KEK."""
        generate_kek_file(tmp_path / "kek.b64")
        current = _write(tmp_path, "proxy.yaml", {"provider": "file", "path": "./kek.b64"})
        store = _store(current)
        store.create()
        store.add_practices(["p1", "p2"])
        store.rotate("p1")
        ring = store.load()
        tokens = {p: ring.encrypt(p, "ssn", f"900-00-{p}") for p in ("p1", "p2")}
        kids = {i.kid for i in ring.infos()}
        arn = new_kms_key(kms_endpoint)
        hsm_a = f"move-a-{secrets.token_hex(3)}"
        hsm_b = f"move-b-{secrets.token_hex(3)}"
        steps = [
            ("to-hsm.yaml", pkcs11_config(softhsm, hsm_a), ["--generate"]),
            (
                "to-kms.yaml",
                {
                    "provider": "aws-kms",
                    "key_id": arn,
                    "region": REGION,
                    "endpoint_url": kms_endpoint,
                },
                [],
            ),
            ("to-hsm-b.yaml", pkcs11_config(softhsm, hsm_b), ["--generate"]),
            ("to-file.yaml", {"provider": "file", "path": "./kek2.b64"}, ["--generate"]),
        ]
        for name, kek, flags in steps:
            old_settings = load_section(current, "keys", KeySettings)
            old_id = _store(current).kek_id
            new_config = _write(tmp_path, name, kek)
            done = _run(current, "rotate-kek", "--new-config", str(new_config), *flags, env=env)
            assert done.returncode == 0, done.stderr
            snippet = done.stdout[done.stdout.index("keys:\n") :].split("\nRunning")[0]
            printed = yaml.safe_load(snippet)["keys"]["kek"]
            assert printed["provider"] == kek["provider"]
            moved = _store(new_config).load()
            assert {i.kid for i in moved.infos()} == kids
            assert all(moved.open(t).plaintext == f"900-00-{p}" for p, t in tokens.items())
            with pytest.raises(KekError):  # the old KEK no longer opens the keystore...
                KeystoreFile(store.path, kek_provider(old_settings.kek)).load()
            backup = store.path.with_name(f"keystore.json.bak-{old_id}")
            restored = KeystoreFile(backup, kek_provider(old_settings.kek)).load()  # ...its copy
            assert restored.open(tokens["p2"]).plaintext == "900-00-p2"
            [event] = [e for e in _events(current) if e["action"] == "rotate-kek"][-1:]
            assert event["details"]["new_kek_provider"] == kek["provider"]
            assert event["details"]["old_kek_id"] == old_id
            assert event["details"]["new_config"] == str(new_config)
            current = new_config

    def test_new_config_naming_another_keystore_is_refused(self, tmp_path, env):
        """--new-config must name the same keystore file; nothing changes otherwise."""
        generate_kek_file(tmp_path / "kek.b64")
        config = _write(tmp_path, "proxy.yaml", {"provider": "file", "path": "./kek.b64"})
        _store(config).create()
        before = (tmp_path / "keystore.json").read_bytes()
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        other = _write(elsewhere, "proxy.yaml", {"provider": "file", "path": "./kek.b64"})
        done = _run(config, "rotate-kek", "--new-config", str(other), "--generate", env=env)
        assert done.returncode == 2
        assert "both must name the same file" in done.stderr
        assert (tmp_path / "keystore.json").read_bytes() == before
        assert not (elsewhere / "kek.b64").exists()

    def test_unusable_new_kek_changes_nothing(self, tmp_path, softhsm, env):
        """A new KEK that cannot be used (no such token key) leaves the keystore as it was."""
        generate_kek_file(tmp_path / "kek.b64")
        config = _write(tmp_path, "proxy.yaml", {"provider": "file", "path": "./kek.b64"})
        store = _store(config)
        store.create()
        store.add_practices(["p1"])
        before = store.path.read_bytes()
        target = _write(tmp_path, "to.yaml", pkcs11_config(softhsm, "absent"))
        done = _run(config, "rotate-kek", "--new-config", str(target), env=env)
        assert done.returncode == 1
        assert "no AES key labelled" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert store.path.read_bytes() == before

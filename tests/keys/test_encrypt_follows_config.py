"""`phi-keys encrypt --field CLASS` uses the mode the config gives the class, and says so.

Found in issue 15: `--field ssn` ignored `deterministic: true` in fields.classes, so the token
did not match the ones the proxy writes (and the portal looks up by equality).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from proxy.demo.workspace import DemoPorts, create_workspace
from tests.cli_process import run_cli

PHI_KEYS = Path(sys.executable).with_name("phi-keys")
SSN = "900-12-3456"


@pytest.fixture
def config(tmp_path):
    """The demo's config: ssn is deterministic, insurance_id randomized."""
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    return create_workspace(folder, DemoPorts(proxy=28480, portal=28481, admin=29490)).config_path


def encrypt(config, field, *extra, value=SSN):
    return run_cli(
        [str(PHI_KEYS), "-c", str(config), "encrypt", "--practice", "practice-a",
         "--field", field, *extra],
        input=value + "\n", text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_deterministic_class_gives_equal_tokens_without_the_flag(config):
    first, second = encrypt(config, "ssn"), encrypt(config, "ssn")
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert first.stdout.startswith("phi1.")
    assert SSN not in first.stdout + first.stderr
    assert "encrypted as field class ssn, deterministic (AES-SIV)" in first.stderr
    assert "fields.classes.ssn.deterministic is true in" in first.stderr


def test_a_randomized_class_gives_different_tokens_and_says_so(config):
    first, second = encrypt(config, "insurance_id"), encrypt(config, "insurance_id")
    assert first.returncode == 0, first.stderr
    assert first.stdout != second.stdout
    assert "randomized (AES-GCM)" in first.stderr


def test_deterministic_flag_against_a_randomized_class_is_refused(config):
    result = encrypt(config, "insurance_id", "--deterministic")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "fields.classes.insurance_id" in result.stderr
    assert "Nothing was encrypted" in result.stderr


def test_a_class_the_config_does_not_define_is_refused(config):
    result = encrypt(config, "snn")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "field class 'snn' is not defined under fields.classes" in result.stderr
    assert "dob, history, insurance_id, ssn" in result.stderr


def test_a_config_without_field_classes_follows_the_flag(config):
    """A keys-only config: --deterministic decides, and the reason says there was no policy."""
    data = yaml.safe_load(config.read_text())
    del data["fields"]
    config.write_text(yaml.safe_dump(data))
    plain = encrypt(config, "ssn")
    assert plain.returncode == 0, plain.stderr
    assert "randomized (AES-GCM): the default (the config" in plain.stderr
    asked = [encrypt(config, "ssn", "--deterministic") for _ in range(2)]
    assert asked[0].stdout == asked[1].stdout
    assert "deterministic (AES-SIV): --deterministic" in asked[0].stderr

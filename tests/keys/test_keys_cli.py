"""`phi-keys` run as a real console script, end to end, plus its error exits."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from keys.cli import main
from keys.kek import FileKek
from keys.keystore import KeystoreFile
from tests.cli_process import run_cli

PHI_KEYS = shutil.which("phi-keys", path=str(Path(sys.executable).parent)) or "phi-keys"

CONFIG = """\
keys:
  keystore: ./keystore.json
  kek:
    provider: file
    path: ./kek.b64
"""


@pytest.fixture
def config(tmp_path):
    """A config file naming ./keystore.json and ./kek.b64 beside it."""
    path = tmp_path / "proxy.yaml"
    path.write_text(CONFIG)
    return path


def _run(*args, cwd, stdin="", env_config=None):
    env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
    if env_config is not None:
        env["PHI_PROXY_CONFIG"] = str(env_config)
    return run_cli(
        [PHI_KEYS, *args],
        cwd=cwd,
        input=stdin,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


class TestEndToEnd:
    def test_full_round_trip_as_subprocess(self, tmp_path, config):
        """Running init, add-practice, rotate, list --json, encrypt: the token opens in-process."""
        init = _run("-c", str(config), "init", "--generate-kek", "kek.b64", cwd=tmp_path)
        assert init.returncode == 0, init.stderr
        assert stat.S_IMODE((tmp_path / "kek.b64").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "keystore.json").stat().st_mode) == 0o600

        added = _run("add-practice", "clinic-a", "clinic-b", cwd=tmp_path, env_config=config)
        assert added.returncode == 0, added.stderr
        rotated = _run("rotate", "-c", str(config), "--practice", "clinic-a", cwd=tmp_path)
        assert rotated.returncode == 0, rotated.stderr

        listed = _run("-c", str(config), "list", "--json", cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert [(r["practice"], r["version"], r["state"]) for r in rows] == [
            ("clinic-a", 1, "decrypt-only"),
            ("clinic-a", 2, "active"),
            ("clinic-b", 1, "active"),
        ]
        assert set(rows[0]) == {"practice", "kid", "version", "state", "created_at"}

        encrypted = _run(
            "-c",
            str(config),
            "encrypt",
            "--practice",
            "clinic-a",
            "--field",
            "ssn",
            cwd=tmp_path,
            stdin="123-45-6789\n",
        )
        assert encrypted.returncode == 0, encrypted.stderr
        token = encrypted.stdout.strip()
        ring = KeystoreFile(tmp_path / "keystore.json", FileKek(tmp_path / "kek.b64")).load()
        opened = ring.open(token)
        assert (opened.plaintext, opened.practice, opened.field_class) == (
            "123-45-6789",
            "clinic-a",
            "ssn",
        )
        assert opened.kid == rows[1]["kid"]

        table = _run("-c", str(config), "list", cwd=tmp_path)
        assert "PRACTICE" in table.stdout
        assert "clinic-b" in table.stdout
        key_text = (tmp_path / "kek.b64").read_text().strip()
        for out in (init, added, rotated, listed, encrypted, table):
            assert key_text not in out.stdout + out.stderr

    def test_python_dash_m_keys_and_deterministic(self, tmp_path, config):
        """`python -m keys` is the same tool; --deterministic gives equal tokens."""
        assert (
            _run("-c", str(config), "init", "--generate-kek", "kek.b64", cwd=tmp_path).returncode
            == 0
        )
        assert _run("-c", str(config), "add-practice", "p1", cwd=tmp_path).returncode == 0
        args = [
            "-m",
            "keys",
            "-c",
            str(config),
            "encrypt",
            "--practice",
            "p1",
            "--field",
            "insurance_id",
            "--deterministic",
        ]
        tokens = {
            run_cli(
                [sys.executable, *args],
                cwd=tmp_path,
                input="XZ-1",
                text=True,
                check=True,
            ).stdout
            for _ in range(2)
        }
        assert len(tokens) == 1
        assert tokens.pop().startswith("phi1.d.")


class TestErrors:
    def test_no_config_is_usage_error(self, tmp_path):
        """Without -c or PHI_PROXY_CONFIG the tool exits 2 with one clear line."""
        result = _run("list", cwd=tmp_path)
        assert result.returncode == 2
        assert "PHI_PROXY_CONFIG" in result.stderr
        assert "Traceback" not in result.stderr

    def test_operational_errors_exit_1_without_traceback(self, tmp_path, config):
        """Missing keystore, re-init, bad KEK mode: exit 1, one message, no traceback."""
        missing = _run("-c", str(config), "list", cwd=tmp_path)
        assert missing.returncode == 1
        assert "phi-keys init" in missing.stderr or "--generate-kek" in missing.stderr
        assert (
            _run("-c", str(config), "init", "--generate-kek", "kek.b64", cwd=tmp_path).returncode
            == 0
        )
        again = _run("-c", str(config), "init", cwd=tmp_path)
        assert again.returncode == 1
        assert "already exists" in again.stderr
        (tmp_path / "kek.b64").chmod(0o644)
        loose = _run("-c", str(config), "list", cwd=tmp_path)
        assert loose.returncode == 1
        assert "chmod 600" in loose.stderr
        for result in (missing, again, loose):
            assert "Traceback" not in result.stderr

    def test_generate_kek_must_match_config(self, tmp_path, config):
        """--generate-kek to a path the config does not name is a usage error; nothing written."""
        result = _run("-c", str(config), "init", "--generate-kek", "other.b64", cwd=tmp_path)
        assert result.returncode == 2
        assert "keys.kek.path" in result.stderr
        assert not (tmp_path / "other.b64").exists()
        assert not (tmp_path / "keystore.json").exists()

    def test_rotate_needs_practice_or_all(self, config, capsys):
        """`rotate` without --practice or --all is an argparse usage error (exit 2)."""
        with pytest.raises(SystemExit) as caught:
            main(["-c", str(config), "rotate"])
        assert caught.value.code == 2
        assert "--practice" in capsys.readouterr().err

    def test_in_process_main_returns_status(self, config, capsys):
        """main() returns 1 and prints one line for an operational error."""
        assert main(["-c", str(config), "list"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("phi-keys: ")

"""`phi-keys` leaves no silent gaps: partial changes audited, relative KEK paths, --dsn passwords.

A change that stops part-way is audited for what it did; `rotate-kek --new-kek RELATIVE`
resolves the path as the operator meant; a password in --dsn is refused; `encrypt-existing`
reads `deterministic` the way the proxy does. Real KEK,
keystore, SQLite table and console script.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
import yaml

from keys.config_file import load_section
from keys.kek import generate_kek_file
from keys.settings import KeySettings, keystore_file, open_keyring
from keys.table_backends import check_dsn
from keys.token_format import TOKEN_PREFIX
from proxy.audit.settings import AuditSettings
from proxy.transform.settings import FieldSettings
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

PHI_KEYS = Path(sys.executable).with_name("phi-keys")
PHI_AUDIT = Path(sys.executable).with_name("phi-audit")

CLASSES = {
    "ssn": {"mask": {"text": "***"}, "deterministic": True},
    "history": {"mask": None},
}


def write_config(folder: Path, *, classes: dict | None = None, kek: str = "./kek.b64") -> Path:
    config = {
        "keys": {"keystore": "./keystore.json", "kek": {"provider": "file", "path": kek}},
        "audit": {"fsync": False},
        "fields": {"classes": classes if classes is not None else CLASSES},
    }
    path = folder / "proxy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def make_keys(folder: Path, practices: tuple[str, ...] = ("practice-a",)) -> Path:
    """KEK, keystore with `practices`, config (keys, audit, fields) in `folder`."""
    generate_kek_file(folder / "kek.b64")
    config = write_config(folder)
    store = keystore_file(load_section(config, "keys", KeySettings))
    store.create()
    store.add_practices(practices)
    return config


def phi_keys(config: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
    return run_cli(
        [str(PHI_KEYS), "-c", str(config), *args],
        text=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def key_changes(config: Path) -> list[dict]:
    path = load_section(config, "audit", AuditSettings).path
    if not path.exists():
        return []
    events = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    return [e for e in events if e["type"] == "key_change"]


def make_table(folder: Path, rows: list[tuple]) -> str:
    db = folder / "portal.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, practice_id TEXT, ssn)")
        conn.executemany("INSERT INTO patients VALUES (?, ?, ?)", rows)
    conn.close()
    return f"sqlite:///{db}"


def table_rows(dsn: str) -> list[tuple]:
    conn = sqlite3.connect(dsn.removeprefix("sqlite:///"))
    try:
        return conn.execute("SELECT id, practice_id, ssn FROM patients ORDER BY id").fetchall()
    finally:
        conn.close()


def encrypt_existing(config: Path, dsn: str, *extra: str) -> subprocess.CompletedProcess:
    return phi_keys(
        config, "encrypt-existing", "--dsn", dsn, "--table", "patients", "--key", "id",
        "--practice-column", "practice_id", "--columns", "ssn:ssn", "--batch-size", "1", *extra,
    )  # fmt: skip


# ---- F9: a key change that commits and then exits 1 is still audited -------------------------


class TestPartialChangesAreAudited:
    def test_encrypt_existing_with_a_practice_without_key(self, tmp_path):
        config = make_keys(tmp_path)
        dsn = make_table(
            tmp_path,
            [(1, "practice-a", "900-01-0001"), (2, "practice-a", "900-01-0002"),
             (3, "practice-z", "900-01-0003")],
        )  # fmt: skip
        done = encrypt_existing(config, dsn)
        assert done.returncode == 1, done.stderr
        rows = table_rows(dsn)
        assert all(r[2].startswith(TOKEN_PREFIX) for r in rows[:2])
        assert rows[2][2] == "900-01-0003"
        [event] = key_changes(config)
        assert event["action"] == "encrypt-existing"
        details = event["details"]
        assert details["partial"] is True
        assert details["exit_status"] == 1
        assert details["counts"]["values_written"] == 2
        assert details["counts"]["left_plaintext"] == 1
        assert details["table"] == "patients"
        assert "dsn" not in details
        assert "900-01" not in json.dumps(event)  # counts and names only, never values
        verified = run_cli(
            [str(PHI_AUDIT), "-c", str(config), "verify"],
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stderr

    def test_a_failure_after_committed_batches(self, tmp_path):
        """A value that is not text stops the run with an error after the others committed."""
        config = make_keys(tmp_path)
        dsn = make_table(tmp_path, [(1, "practice-a", "900-01-0001"), (2, "practice-a", 900010002)])
        done = encrypt_existing(config, dsn)
        assert done.returncode == 1
        assert "values still hold what may be plaintext PHI" in done.stderr
        assert table_rows(dsn)[0][2].startswith(TOKEN_PREFIX)
        [event] = key_changes(config)
        assert event["details"]["partial"] is True
        assert event["details"]["exit_status"] == 1
        assert event["details"]["counts"]["values_written"] == 1
        assert event["details"]["counts"]["left_unresolved"] == 1

    def test_rewrap_leaving_tokens_behind(self, tmp_path):
        """One token moves to the new key; one (another keystore's) cannot be opened: exit 1."""
        config = make_keys(tmp_path)
        settings = load_section(config, "keys", KeySettings)
        old = open_keyring(settings).encrypt("practice-a", "ssn", "900-01-0001")
        foreign_folder = tmp_path / "other"
        foreign_folder.mkdir()
        foreign = open_keyring(
            load_section(make_keys(foreign_folder), "keys", KeySettings)
        ).encrypt("practice-a", "ssn", "900-01-0002")
        keystore_file(settings).rotate("practice-a")
        dsn = make_table(tmp_path, [(1, "practice-a", old), (2, "practice-a", foreign)])
        done = phi_keys(
            config, "rewrap", "--dsn", dsn, "--table", "patients", "--columns", "ssn",
            "--batch-size", "1",
        )  # fmt: skip
        assert done.returncode == 1, done.stderr
        assert "do not retire those keys yet" in done.stderr
        assert table_rows(dsn)[0][2] != old
        changes = key_changes(config)
        assert [e["action"] for e in changes] == ["rewrap"]
        details = changes[0]["details"]
        assert (details["partial"], details["exit_status"]) == (True, 1)
        assert details["counts"]["values_written"] == 1
        assert details["counts"]["left_on_old_key"] == 1

    def test_nothing_committed_writes_no_event(self, tmp_path):
        """Only rows of a practice without a key: nothing changed, nothing to audit."""
        config = make_keys(tmp_path)
        dsn = make_table(tmp_path, [(1, "practice-z", "900-01-0003")])
        assert encrypt_existing(config, dsn).returncode == 1
        assert key_changes(config) == []

    def test_a_complete_run_is_not_partial(self, tmp_path):
        config = make_keys(tmp_path)
        dsn = make_table(tmp_path, [(1, "practice-a", "900-01-0001")])
        done = encrypt_existing(config, dsn)
        assert done.returncode == 0, done.stderr
        [event] = key_changes(config)
        assert "partial" not in event["details"]
        assert event["details"]["counts"]["values_written"] == 1


# ---- F10: rotate-kek --new-kek RELATIVE --------------------------------------------------------


class TestRotateKekRelative:
    def test_paths_are_absolute_and_the_printed_yaml_works(self, tmp_path):
        site = tmp_path / "site"
        site.mkdir()
        config = make_keys(site)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        done = phi_keys(
            config, "rotate-kek", "--new-kek", "kek-new.b64", "--generate", "--no-backup",
            cwd=elsewhere,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        new_kek = elsewhere / "kek-new.b64"
        assert new_kek.exists()
        assert f"wrote new KEK to {new_kek} " in done.stdout
        assert "point keys.kek at kek-new.b64" not in done.stdout
        snippet = done.stdout[done.stdout.index("keys:\n") :].split("\nRunning")[0]
        assert yaml.safe_load(snippet) == {
            "keys": {"kek": {"provider": "file", "path": str(new_kek)}}
        }
        assert f"note: the new KEK is in {elsewhere}" in done.stdout
        # Following the printed instruction opens the keystore.
        write_config(config.parent, kek=str(new_kek))
        listed = phi_keys(config, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [event] = [e for e in key_changes(config) if e["action"] == "rotate-kek"]
        assert event["details"]["new_kek"] == str(new_kek)


# ---- F12: a password in --dsn is refused --------------------------------------------------------


class TestDsnPassword:
    @pytest.mark.parametrize(
        "dsn",
        [
            "postgresql://postgres:S3cretPassw0rd@127.0.0.1:5432/test",
            "postgresql://postgres@127.0.0.1:5432/test?password=S3cretPassw0rd",
            "postgres://postgres:S3cretPassw0rd@127.0.0.1/test",
        ],
    )
    @pytest.mark.parametrize("command", ["encrypt-existing", "rewrap", "retire"])
    def test_refused_before_connecting(self, tmp_path, dsn, command):
        """Refused (exit 2) without echoing the DSN, before any connection or change."""
        config = make_keys(tmp_path)
        store = keystore_file(load_section(config, "keys", KeySettings))
        old_kid = store.infos()[0].kid
        store.rotate("practice-a")  # retire needs a decrypt-only key to get as far as --dsn
        args = {
            "encrypt-existing": ["--practice-column", "practice_id", "--columns", "ssn:ssn"],
            "rewrap": ["--columns", "ssn"],
            "retire": ["--key", old_kid, "--columns", "ssn"],
        }[command]
        done = phi_keys(config, command, "--dsn", dsn, "--table", "patients", *args)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "--dsn must not contain a password" in done.stderr
        assert "PGPASSWORD" in done.stderr
        assert "~/.pgpass" in done.stderr
        assert "S3cret" not in done.stdout + done.stderr
        assert key_changes(config) == []


# ---- encrypt-existing reads `deterministic` through the proxy's model ------------------------


class TestDeterministicSetting:
    @pytest.mark.parametrize("spelling", ["true", "yes", 1])
    def test_encrypt_existing_agrees_with_the_proxy(self, tmp_path, spelling):
        """A quoted "yes" or a 1 is deterministic to the proxy: migrated rows must match."""
        config = make_keys(tmp_path)
        classes = {"ssn": {"mask": {"text": "***"}, "deterministic": spelling}}
        write_config(tmp_path, classes=classes)
        proxy_says = load_section(config, "fields", FieldSettings).classes["ssn"].deterministic
        assert proxy_says is True
        dsn = make_table(tmp_path, [(1, "practice-a", "900-01-0001")])
        done = encrypt_existing(config, dsn)
        assert done.returncode == 0, done.stderr
        token = table_rows(dsn)[0][2]
        assert token.startswith(f"{TOKEN_PREFIX}d."), token
        settings = load_section(config, "keys", KeySettings)
        assert token == open_keyring(settings).encrypt(
            "practice-a", "ssn", "900-01-0001", deterministic=True
        )


class TestDryRun:
    """A dry run changes nothing, so it writes no key_change event."""

    def test_a_dry_run_leaves_no_key_change_event(self, tmp_path):
        config = make_keys(tmp_path)
        dsn = make_table(tmp_path, [(1, "practice-a", "900-01-0001")])
        done = encrypt_existing(config, dsn, "--dry-run")
        assert done.returncode == 0, done.stderr
        assert table_rows(dsn)[0][2] == "900-01-0001"
        assert key_changes(config) == []
        done = encrypt_existing(config, dsn)
        assert done.returncode == 0, done.stderr
        assert [e["action"] for e in key_changes(config)] == ["encrypt-existing"]


class TestDsnWithoutPassword:
    """Only the password is refused on --dsn: libpq forms without one still work."""

    @pytest.mark.parametrize(
        "dsn",
        [
            "postgresql:///test?host=/var/run/postgresql",  # a Unix socket
            "postgresql://app@db1:5432,db2:5432/portal",  # several hosts
            "postgresql://app@127.0.0.1:5432/test",
        ],
    )
    def test_accepted(self, dsn):
        assert check_dsn(dsn) == dsn

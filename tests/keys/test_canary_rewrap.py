"""Canaries stay armed through key changes.

A rewrap registers each rewrapped canary token, and after a rotation the proxy also looks for
what a deterministic canary value now encrypts to.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from keys.cli import main
from keys.config_file import load_section
from keys.settings import KeySettings
from proxy.canaries import load_canaries
from tests.keys.canary_helpers import MEMBER, SSN, issue, keyring_of, make_config, register_of

_TOKEN = re.compile(r"phi1\.[A-Za-z0-9_.\-]+")


def settings_of(config_path):
    return load_section(config_path, "keys", KeySettings)


def hits_in(config_path, data: str):
    """The canaries (id, class) the proxy's own scanner finds in `data` with today's register."""
    scanner = load_canaries(settings_of(config_path), keyring_of(config_path))
    return {(hit.canary, hit.field_class) for hit in scanner.find(data.encode())}


def rotate(config_path):
    assert main(["-c", str(config_path), "rotate", "--practice", "practice-a"]) == 0


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
def canary(config, capsys):
    """A canary with a deterministic SSN and a randomized member id, and a dump holding both."""
    canary_id, tokens = issue(config, capsys, f"ssn={SSN}", f"insurance_id={MEMBER}")
    dump = config.parent / "dump.sql"
    dump.write_text(
        "INSERT INTO patients VALUES ("  # noqa: S608 - a dump file's text, run by nobody
        f"'{tokens['ssn']}', '{tokens['insurance_id']}', 'phi1-looking text stays');\n"
    )
    return canary_id, tokens, dump


class TestFileRewrap:
    def test_rewrapped_canary_tokens_are_still_found(self, config, capsys, canary):
        """After rotate + rewrap, the dump's new tokens are the canary's, both classes."""
        canary_id, tokens, dump = canary
        rotate(config)
        out = config.parent / "dump.new.sql"
        capsys.readouterr()
        status = main(["-c", str(config), "rewrap", "--in", str(dump), "--out", str(out)])
        report = capsys.readouterr()
        assert status == 0, report.err
        rewrapped = out.read_text()
        assert not set(_TOKEN.findall(rewrapped)) & set(tokens.values())  # really rewrapped
        assert hits_in(config, rewrapped) == {(canary_id, "ssn"), (canary_id, "insurance_id")}
        assert "2 rewrapped canary tokens registered" in report.out

    def test_old_tokens_stay_registered_for_backups(self, config, canary):
        """A backup taken before the rewrap still holds the old tokens: still a touch."""
        canary_id, _tokens, dump = canary
        rotate(config)
        out = config.parent / "dump.new.sql"
        assert main(["-c", str(config), "rewrap", "--in", str(dump), "--out", str(out)]) == 0
        assert hits_in(config, dump.read_text()) == {
            (canary_id, "ssn"),
            (canary_id, "insurance_id"),
        }

    def test_a_second_rewrap_registers_nothing_more(self, config, canary):
        """Tokens already under the primary key are left alone, and so is the register."""
        _canary_id, _tokens, dump = canary
        rotate(config)
        first, second = config.parent / "one.sql", config.parent / "two.sql"
        assert main(["-c", str(config), "rewrap", "--in", str(dump), "--out", str(first)]) == 0
        before = register_of(config).path.read_bytes()
        assert main(["-c", str(config), "rewrap", "--in", str(first), "--out", str(second)]) == 0
        assert register_of(config).path.read_bytes() == before
        assert second.read_text() == first.read_text()

    def test_dry_run_leaves_the_register_alone(self, config, canary):
        _canary_id, _tokens, dump = canary
        rotate(config)
        before = register_of(config).path.read_bytes()
        assert main(["-c", str(config), "rewrap", "--in", str(dump), "--dry-run"]) == 0
        assert register_of(config).path.read_bytes() == before

    def test_a_register_others_may_write_stops_the_rewrap_before_any_change(
        self, config, capsys, canary
    ):
        """Rewrapping without updating the tripwire would disarm it: nothing is written."""
        _canary_id, _tokens, dump = canary
        rotate(config)
        register_of(config).path.chmod(0o666)
        out = config.parent / "dump.new.sql"
        capsys.readouterr()
        assert main(["-c", str(config), "rewrap", "--in", str(dump), "--out", str(out)]) != 0
        assert "canary register" in capsys.readouterr().err
        assert not out.exists()


class TestTableRewrap:
    def test_rewrapped_rows_keep_their_canary(self, config, canary):
        """A live-table rewrap, one row per batch: each batch's canary tokens are registered."""
        canary_id, tokens, _dump = canary
        db = config.parent / "portal.db"
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE patients (id INTEGER PRIMARY KEY, ssn TEXT, member TEXT)")
            conn.execute(
                "INSERT INTO patients VALUES (1, ?, ?)", (tokens["ssn"], tokens["insurance_id"])
            )
            conn.execute("INSERT INTO patients VALUES (2, 'none', NULL)")
        conn.close()
        rotate(config)
        args = ["-c", str(config), "rewrap", "--dsn", f"sqlite:///{db}", "--table", "patients"]
        assert main([*args, "--columns", "ssn,member", "--batch-size", "1"]) == 0
        with sqlite3.connect(db) as conn:
            ssn, member = conn.execute("SELECT ssn, member FROM patients WHERE id = 1").fetchone()
        conn.close()
        assert {ssn, member}.isdisjoint(tokens.values())
        assert hits_in(config, f"{ssn} {member}") == {
            (canary_id, "ssn"),
            (canary_id, "insurance_id"),
        }


class TestRotationWithoutRewrap:
    def test_a_deterministic_canary_value_written_after_rotation_is_found(self, config, canary):
        """The proxy encrypts new writes under the new key: that token is searched for too."""
        canary_id, _tokens, _dump = canary
        rotate(config)
        written = keyring_of(config).encrypt("practice-a", "ssn", SSN, deterministic=True)
        assert hits_in(config, written) == {(canary_id, "ssn")}

    def test_an_ordinary_value_written_after_rotation_is_not_a_canary(self, config, canary):
        _canary_id, _tokens, _dump = canary
        rotate(config)
        written = keyring_of(config).encrypt("practice-a", "ssn", "900-00-0001", deterministic=True)
        assert hits_in(config, written) == set()


class TestListingAfterRewrap:
    def test_list_names_each_class_once_and_show_prints_the_new_tokens(
        self, config, capsys, canary
    ):
        """The tokens to plant now are the rewrapped ones; the listing does not double up."""
        canary_id, _tokens, dump = canary
        rotate(config)
        out = config.parent / "dump.new.sql"
        assert main(["-c", str(config), "rewrap", "--in", str(dump), "--out", str(out)]) == 0
        capsys.readouterr()
        assert main(["-c", str(config), "canary", "--list"]) == 0
        [row] = [line for line in capsys.readouterr().out.splitlines() if canary_id in line]
        assert row.split()[2] == "ssn,insurance_id"
        assert main(["-c", str(config), "canary", "--show", canary_id]) == 0
        shown = set(_TOKEN.findall(capsys.readouterr().out))
        assert shown == set(_TOKEN.findall(out.read_text()))

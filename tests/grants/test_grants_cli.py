import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from keys.config_file import load_section
from proxy.grants.cli import main
from proxy.grants.settings import GrantSettings
from proxy.grants.store import open_grant_store
from tests.cli_process import run_cli

SUBJECT = "https://login.a.test|alice-sub"
PHI_GRANTS = Path(sys.executable).with_name("phi-grants")


@pytest.fixture
def fresh_config(tmp_path):
    """A config file naming a grants store beside it that does not exist yet."""
    path = tmp_path / "proxy.yaml"
    path.write_text("grants:\n  store: grants.sqlite3\n  max_ttl: 90d\n")
    return path


@pytest.fixture
def config(fresh_config):
    """A config file whose (empty) grants store sits beside it, created as the proxy would."""
    settings = load_section(fresh_config, "grants", GrantSettings)

    async def create():
        store = open_grant_store(settings)
        try:
            assert await store.list() == []
        finally:
            await store.close()

    asyncio.run(create())
    assert settings.sqlite_path.exists()
    return fresh_config


def run(config, *args, user="night-nurse-admin", env_config=False):
    """Run the installed phi-grants as the given $USER."""
    env = {k: v for k, v in os.environ.items() if k not in {"SUDO_USER", "PHI_PROXY_CONFIG"}}
    env["USER"] = user
    argv = [str(PHI_GRANTS)]
    if env_config:
        env["PHI_PROXY_CONFIG"] = str(config)
    else:
        argv += ["-c", str(config)]
    return run_cli([*argv, *args], text=True, env=env, timeout=60, check=False)


def listed(config, *args):
    """The grants phi-grants list --json prints."""
    result = run(config, "list", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


class TestPhiGrantsSubprocess:
    def test_add_list_revoke_round_trip(self, config):
        """Add records the invoking user; revoke by id takes the grant out of --active."""
        added = run(
            config,
            "add",
            "--subject",
            SUBJECT,
            "--practice",
            "pr-a",
            "--fields",
            "ssn,history",
            "--ttl",
            "30d",
            "--reason",
            "TICKET-7",
        )
        assert added.returncode == 0, added.stderr
        assert added.stdout.startswith("added g_")
        [grant] = listed(config, "--active")
        assert grant["subject"] == SUBJECT
        assert grant["fields"] == ["history", "ssn"]
        assert grant["created_by"] == "night-nurse-admin"
        assert grant["reason"] == "TICKET-7"
        revoked = run(config, "revoke", "--id", grant["id"], "--reason", "left", "--by", "ciso")
        assert revoked.returncode == 0, revoked.stderr
        assert f"revoked {grant['id']}" in revoked.stdout
        assert listed(config, "--active") == []
        [after] = listed(config)
        assert (after["revoked_by"], after["revoke_reason"]) == ("ciso", "left")

    def test_offboard_prints_what_it_revoked(self, config):
        """Offboard revokes the person's grants in every practice and lists each one."""
        for practice in ("pr-a", "pr-b"):
            assert (
                run(
                    config,
                    "add",
                    "--subject",
                    SUBJECT,
                    "--practice",
                    practice,
                    "--ttl",
                    "7d",
                    "--reason",
                    "cover",
                ).returncode
                == 0
            )
        result = run(
            config, "offboard", "--subject", SUBJECT, "--reason", "left practice", env_config=True
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.count("revoked g_") == 2
        assert "pr-a" in result.stdout
        assert "pr-b" in result.stdout
        assert listed(config, "--active") == []

    def test_ttl_over_max_is_refused_with_one_line(self, config):
        """A --ttl beyond grants.max_ttl exits 2 with one explanatory line and stores nothing."""
        result = run(
            config,
            "add",
            "--subject",
            SUBJECT,
            "--practice",
            "pr-a",
            "--ttl",
            "91d",
            "--reason",
            "x",
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1
        assert "max_ttl" in result.stderr
        assert listed(config) == []

    def test_revoke_unknown_id_exits_1(self, config):
        """Revoking a grant id that does not exist is an operational failure (exit 1)."""
        result = run(config, "revoke", "--id", "g_nope", "--reason", "x")
        assert result.returncode == 1
        assert "no grant has id" in result.stderr

    def test_add_creates_a_missing_store_and_says_so(self, fresh_config):
        """First use: `add` creates the store, and stderr names where, so a typo is seen."""
        store = fresh_config.parent / "grants.sqlite3"
        result = run(
            fresh_config, "add", "--subject", SUBJECT, "--practice", "pr-a", "--ttl", "1d",
            "--reason", "first grant",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"created a new grant store at {store}" in result.stderr
        assert store.exists()
        again = run(
            fresh_config, "add", "--subject", SUBJECT, "--practice", "pr-b", "--ttl", "1d",
            "--reason", "second grant",
        )  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert "created" not in again.stderr

    @pytest.mark.parametrize(
        "args",
        [
            ["list"],
            ["revoke", "--id", "g_x", "--reason", "left"],
            ["offboard", "--subject", SUBJECT, "--reason", "left"],
        ],
        ids=["list", "revoke", "offboard"],
    )
    def test_reading_or_revoking_a_missing_store_is_refused_and_creates_nothing(
        self, fresh_config, args
    ):
        """A mistyped grants.store must not read as "0 grant(s)" or "nothing to revoke"."""
        result = run(fresh_config, *args)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "no grant database there" in result.stderr
        assert "grants.store" in result.stderr
        assert result.stdout == ""
        assert not (fresh_config.parent / "grants.sqlite3").exists()

    def test_a_change_without_its_audit_key_says_it_was_made_unaudited(self, config):
        """The grant exists; the operator is told it is not in the trail, and what to do."""
        first = run(config, "add", "--subject", SUBJECT, "--practice", "pr-a", "--ttl", "1d",
                    "--reason", "first")  # fmt: skip
        assert first.returncode == 0, first.stderr
        (config.parent / "audit.key").unlink()  # the trail exists, its key is gone
        second = run(config, "add", "--subject", SUBJECT, "--practice", "pr-b", "--ttl", "1d",
                     "--reason", "second")  # fmt: skip
        assert second.returncode == 1
        assert "the change was made but could not be written to the audit trail" in second.stderr
        assert "record it by hand" in second.stderr
        assert {g["practice"] for g in listed(config)} == {"pr-a", "pr-b"}

    def test_missing_config_exits_2(self, tmp_path):
        """Without -c or PHI_PROXY_CONFIG, phi-grants says how to give a config and exits 2."""
        env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
        result = run_cli(
            [str(PHI_GRANTS), "list"],
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "PHI_PROXY_CONFIG" in result.stderr

    def test_python_dash_m(self, config):
        """`python -m proxy.grants` is the same command."""
        result = run_cli(
            [sys.executable, "-m", "proxy.grants", "-c", str(config), "list"],
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "0 grant(s)" in result.stdout


class TestPhiGrantsInProcess:
    def test_expiring_filter(self, config, capsys, monkeypatch):
        """List --expiring 7d shows only active grants ending within seven days."""
        monkeypatch.setenv("USER", "tester")
        assert (
            main(
                [
                    "-c",
                    str(config),
                    "add",
                    "--subject",
                    SUBJECT,
                    "--practice",
                    "pr-a",
                    "--ttl",
                    "3d",
                    "--reason",
                    "short",
                ]
            )
            == 0
        )
        assert (
            main(
                [
                    "-c",
                    str(config),
                    "add",
                    "--subject",
                    SUBJECT,
                    "--practice",
                    "pr-b",
                    "--ttl",
                    "30d",
                    "--reason",
                    "long",
                ]
            )
            == 0
        )
        capsys.readouterr()
        assert main(["-c", str(config), "list", "--expiring", "7d", "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["practice"] for r in rows] == ["pr-a"]

    def test_revoke_subject_needs_practice(self, config, capsys):
        """Revoke --subject without --practice is a usage error pointing at offboard."""
        assert (
            main(["-c", str(config), "revoke", "--subject", SUBJECT, "--reason", "x", "--by", "me"])
            == 2
        )
        assert "offboard" in capsys.readouterr().err

    @pytest.mark.parametrize(
        "args",
        [
            ["add", "--subject", "no-bar", "--practice", "p", "--ttl", "1d", "--reason", "x"],
            ["add", "--subject", SUBJECT, "--practice", "p", "--ttl", "1y", "--reason", "x"],
            [
                "add",
                "--subject",
                SUBJECT,
                "--practice",
                "p",
                "--ttl",
                "1d",
                "--reason",
                "x",
                "--not-before",
                "2025-01-01T00:00:00",
            ],
        ],
    )
    def test_bad_arguments_exit_2(self, config, capsys, args):
        """A malformed subject, duration or zone-less time is a usage error (exit 2)."""
        with pytest.raises(SystemExit) as info:
            main(["-c", str(config), *args])
        assert info.value.code == 2
        assert "error:" in capsys.readouterr().err

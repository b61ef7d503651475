"""`phi-grants add` refuses a practice with no key in the keystore, unless --no-key-yet.

Found in issue 15: a grant for a mistyped practice id succeeded silently, and the person it was
meant for saw masks. Run as the installed command against the demo's real keystore and store.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from proxy.demo.workspace import DemoPorts, create_workspace
from tests.cli_process import run_cli

PHI_GRANTS = Path(sys.executable).with_name("phi-grants")
PHI_KEYS = Path(sys.executable).with_name("phi-keys")
SUBJECT = "https://login.demo.test|alice"


@pytest.fixture
def config(tmp_path):
    """The demo's config: a keystore with practice-a and practice-b; no grant store yet."""
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    return create_workspace(folder, DemoPorts(proxy=28380, portal=28381, admin=29390)).config_path


def grants(config, *args):
    return run_cli(
        [str(PHI_GRANTS), "-c", str(config), *args],
        text=True,
        timeout=120,
        check=False,
    )


def add(config, practice, *extra):
    return grants(
        config, "add", "--subject", SUBJECT, "--practice", practice, "--ttl", "1d",
        "--reason", "test", "--by", "tester", *extra,
    )  # fmt: skip


def test_a_practice_with_a_key_is_granted_without_a_note(config):
    result = add(config, "practice-a")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("added ")
    assert "note:" not in result.stderr


def test_a_mistyped_practice_is_refused_naming_the_known_ones_and_nothing_is_created(config):
    """Exit 2, one line naming the keystore, the practices with keys and --no-key-yet."""
    result = add(config, "practice-A")
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith("phi-grants: refused: practice 'practice-A' has no key in ")
    assert "keystore.json" in line
    assert "Practices with keys: practice-a, practice-b (" in line
    assert "Nothing was added" in line
    assert "--no-key-yet" in line
    assert not (config.parent / "grants.sqlite3").exists()


def test_no_key_yet_adds_the_grant_and_says_what_it_waits_for(config):
    """With --no-key-yet the grant is stored, and stderr says the key is still to be created."""
    result = add(config, "practice-new", "--no-key-yet")
    assert result.returncode == 0, result.stderr
    assert "practice 'practice-new' has no key in" in result.stderr
    assert "phi-keys add-practice practice-new" in result.stderr
    listed = json.loads(grants(config, "list", "--json").stdout)
    assert [g["practice"] for g in listed] == ["practice-new"]


def test_a_shredded_practice_is_refused(config):
    """Every key destroyed: a grant would never show anything, so it is refused."""
    shred = run_cli(
        [str(PHI_KEYS), "-c", str(config), "shred", "--practice", "practice-b",
         "--confirm", "practice-b"],
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert shred.returncode == 0, shred.stderr
    result = add(config, "practice-b")
    assert result.returncode == 2
    assert "practice 'practice-b' was shredded" in result.stderr


def test_an_unreadable_keystore_is_refused_unless_no_key_yet(config):
    """Cannot check: refused with the keystore's error; --no-key-yet adds with a note."""
    (config.parent / "kek.b64").unlink()
    result = add(config, "practice-a")
    assert result.returncode == 2
    assert "cannot check that practice 'practice-a' has a key" in result.stderr
    assert "kek.b64" in result.stderr
    forced = add(config, "practice-a", "--no-key-yet")
    assert forced.returncode == 0, forced.stderr
    assert "was not checked against the keystore" in forced.stderr

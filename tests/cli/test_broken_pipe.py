"""Every CLI ends quietly, with status 141, when the reader of its output has already gone.

Each command runs as a real process whose stdout is a pipe with its reading end closed: the
deterministic form of `phi-grants list | head -1` (head gone before the next line). Both with
Python's default block buffering (the error comes at the final flush) and unbuffered (it comes
at the first print).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from keys.broken_pipe import EXIT_BROKEN_PIPE, quiet_on_broken_pipe
from tests.cli_process import run_cli

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "proxy.example.yaml"
ISSUER = "https://login.example.org/realms/clinic"  # the example config's issuer

COMMANDS = {
    "phi-grants list": ("phi-grants", "-c", "{config}", "list"),
    "phi-grants review": ("phi-grants", "-c", "{config}", "review"),
    "phi-audit report": ("phi-audit", "-c", "{config}", "report"),
    "phi-keys list": ("phi-keys", "-c", "{config}", "list"),
    "phi-proxy check-config": ("phi-proxy", "check-config", "-c", "{config}"),
}


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PHI_PROXY_CONFIG", "PYTHONUNBUFFERED"}}
    return env | extra


def _run(folder: Path, *argv: str) -> None:
    done = run_cli(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=folder,
        env=_env(),
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> Path:
    """The example config with a real keystore, two grants and an audit trail (via phi-keys)."""
    folder = tmp_path_factory.mktemp("pipe")
    path = folder / "proxy.yaml"
    shutil.copy(EXAMPLE, path)
    _run(folder, "phi-keys", "-c", str(path), "init", "--generate-kek", "kek.b64")
    _run(folder, "phi-keys", "-c", str(path), "add-practice", "practice-a", "practice-b")
    for sub, practice in (("alice", "practice-a"), ("bob", "practice-b")):
        _run(
            folder,
            *("phi-grants", "-c", str(path), "add", "--subject", f"{ISSUER}|{sub}"),
            *("--practice", practice, "--ttl", "30d", "--reason", "broken pipe test"),
        )
    return path


def _closed_stdout_run(
    config: Path, *argv: str, unbuffered: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command whose stdout is a pipe with its reader already gone."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes anything
    try:
        return subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=config.parent,
            env=_env(**({"PYTHONUNBUFFERED": "1"} if unbuffered else {})),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize("buffering", ["buffered", "unbuffered"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_reader_that_left_early_gives_no_traceback(config, command, buffering):
    """No traceback on stderr, and exit status 141 (128 + SIGPIPE), as a shell tool would."""
    argv = [part.format(config=config) for part in COMMANDS[command]]
    done = _closed_stdout_run(config, *argv, unbuffered=buffering == "unbuffered")
    assert "Traceback" not in done.stderr
    assert "BrokenPipeError" not in done.stderr
    assert "Exception ignored" not in done.stderr
    assert done.returncode == EXIT_BROKEN_PIPE == 141


def test_the_same_command_with_a_reader_succeeds(config):
    """With someone reading, the wrapped command exits 0 and prints everything."""
    done = run_cli(
        [str(BIN / "phi-grants"), "-c", str(config), "list"],
        env=_env(),
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "practice-a" in done.stdout
    assert "practice-b" in done.stdout


def test_a_broken_pipe_elsewhere_is_not_hidden():
    """A BrokenPipeError while stdout is fine (a socket, say) still propagates."""

    @quiet_on_broken_pipe
    def main() -> int:
        raise BrokenPipeError

    with pytest.raises(BrokenPipeError):
        main()


def test_the_status_passes_through():
    """Without a broken pipe the wrapped main's own status is returned."""
    assert quiet_on_broken_pipe(lambda: 3)() == 3


def _change_events(config: Path, kind: str, action: str) -> list[dict]:
    trail = config.parent / "audit.jsonl"
    events = [json.loads(line) for line in trail.read_text().splitlines()]
    return [e for e in events if e.get("type") == kind and e.get("action") == action]


def test_a_key_change_finishes_and_is_audited_when_the_reader_left(config):
    """`phi-keys rotate --all | head -1`: every practice rotates and the change is audited.

    Stopping at the first failed print would rotate one practice and write no audit event.
    """
    before = len(_change_events(config, "key_change", "rotate"))
    done = _closed_stdout_run(config, "phi-keys", "-c", str(config), "rotate", "--all")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    listed = run_cli(
        [str(BIN / "phi-keys"), "-c", str(config), "list", "--json"],
        env=_env(),
        text=True,
        timeout=60,
        check=True,
    )
    active = {
        (key["practice"], key["version"])
        for key in json.loads(listed.stdout)
        if key["state"] == "active"
    }
    assert {practice for practice, _ in active} == {"practice-a", "practice-b"}
    assert all(version >= 2 for _, version in active)  # rotated at least once
    assert len(_change_events(config, "key_change", "rotate")) == before + 1


def test_a_grant_change_finishes_and_is_audited_when_the_reader_left(config):
    """`phi-grants add … | head -0`: the grant exists and its audit event was written."""
    before = len(_change_events(config, "grant_change", "add"))
    done = _closed_stdout_run(
        config,
        *("phi-grants", "-c", str(config), "add", "--subject", f"{ISSUER}|carol"),
        *("--practice", "practice-a", "--ttl", "7d", "--reason", "broken pipe test"),
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    listed = run_cli(
        [str(BIN / "phi-grants"), "-c", str(config), "list", "--subject", f"{ISSUER}|carol"],
        env=_env(),
        text=True,
        timeout=60,
        check=True,
    )
    assert "practice-a" in listed.stdout
    assert len(_change_events(config, "grant_change", "add")) == before + 1

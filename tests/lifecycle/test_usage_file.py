"""`keys.usage_file`: the encryption counts live where they can be written, or say why not.

The keystore usually comes from a read-only Secret mount. These tests put it in a folder that
is read-only to the proxy or `phi-keys` (read_only_mount) and check that the counts land in
`keys.usage_file`, that every reader finds them there, and that without it the proxy keeps
encrypting and says once, naming the setting, that the counts cannot be saved.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from typing import TYPE_CHECKING

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from lifecycle_helpers import (
    PHI_KEYS,
    PHI_PROXY,
    ProxyProcess,
    SQLitePortal,
    bearer,
    config_dict,
    grant,
    make_env,
    run_keys,
    write_config,
)

from keys.settings import keystore_file
from keys.token_format import TOKEN_PATTERN
from keys.usage import UsageCounter, read_usage
from proxy.settings import load_settings
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

UNSAVED = "key usage counters cannot be saved"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _secret_env(folder, upstream: str, *, usage_file: str | None, port: int = 0):
    """The lifecycle env with the keystore moved to ./secret (and keys.usage_file if given)."""
    _, issuer = make_env(folder, upstream, port=port)
    (folder / "secret").mkdir()
    (folder / "keystore.json").replace(folder / "secret" / "keystore.json")
    config = config_dict(upstream, port=port, watch_interval=0.2)
    config["keys"].update(keystore="./secret/keystore.json", usage_flush_every=2)
    if usage_file is not None:
        config["keys"]["usage_file"] = usage_file
        (folder / "state").mkdir()
    return write_config(folder, config), issuer


def _kid(config, practice: str = "practice-a") -> str:
    return keystore_file(load_settings(config).keys).load().primary(practice).kid


def _listed_counts(config) -> dict[str, int]:
    listed = run_keys("list", "--json", "--usage", config=config, check=True)
    return {key["kid"]: key["encryptions"] for key in json.loads(listed.stdout)}


def _run(prefix, *argv: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
    return run_cli(
        [*prefix, *argv],
        input=stdin,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def _warnings(stderr: str) -> list[str]:
    """The lines `phi-keys encrypt` wrote to stderr, but the one naming the mode it used."""
    return [x for x in stderr.splitlines() if not x.startswith("phi-keys: encrypted as ")]


def _encrypt(prefix, config, value: str) -> subprocess.CompletedProcess:
    return _run(
        prefix,
        *(PHI_KEYS, "-c", str(config), "encrypt", "--practice", "practice-a", "--field", "ssn"),
        stdin=value,
    )


async def _serve(folder, read_only, *, usage_file: str | None, posts: int, linger: float = 0):
    """`phi-proxy serve` with ./secret read-only, behind a portal: POST records, then stop it."""
    portal = SQLitePortal(folder / "portal.db")
    server = TestServer(portal.app(), host="127.0.0.1")
    await server.start_server()
    upstream, port = str(server.make_url("")).rstrip("/"), _free_port()
    config, issuer = _secret_env(folder, upstream, usage_file=usage_file, port=port)
    await grant(folder, "alice", "practice-a")
    proxy = ProxyProcess()
    try:
        await proxy.start(config, prefix=read_only(folder / "secret"))
        async with aiohttp.ClientSession() as http:
            for i in range(posts):
                record = {"patient_id": f"p{i}", "ssn": "900-12-3456", "member_id": f"M{i}"}
                async with http.post(
                    f"http://127.0.0.1:{port}/api/practices/practice-a/patients",
                    json=record | {"medical_history": "synthetic"},
                    headers=bearer(issuer, "alice"),
                ) as response:
                    assert response.status == 201, "encryption must go on either way"
        await asyncio.sleep(linger)
    finally:
        await proxy.stop()
        await server.close()
    assert proxy.process is not None
    assert proxy.process.returncode == 0
    return config, proxy


@pytest.mark.slow
class TestProxy:
    async def test_counts_land_in_usage_file_when_the_keystore_is_read_only(
        self, tmp_path, read_only
    ):
        """A real proxy counts into keys.usage_file; `phi-keys list --usage` reads them there."""
        config, proxy = await _serve(tmp_path, read_only, usage_file="./state/usage.json", posts=2)
        kid = _kid(config)
        assert read_usage(tmp_path / "state" / "usage.json") == {kid: 6}, "3 fields per record"
        assert _listed_counts(config)[kid] == 6
        assert sorted(p.name for p in (tmp_path / "secret").iterdir()) == ["keystore.json"]
        assert not [line for line in proxy.lines if line.get("level") == "error"]

    async def test_unwritable_counts_are_said_once_and_encryption_goes_on(
        self, tmp_path, read_only
    ):
        """Without usage_file: every write still succeeds; one error names keys.usage_file."""
        _, proxy = await _serve(tmp_path, read_only, usage_file=None, posts=4, linger=1.0)
        errors = [line for line in proxy.lines if line.get("level") == "error"]
        assert len(errors) == 1, errors
        (error,) = errors
        assert error["msg"].startswith(UNSAVED)
        assert error["file"] == str(tmp_path / "secret" / "keystore.json.usage.json")
        assert error["error"].startswith(error["file"])
        assert "keys.usage_file" in error["fix"]
        started = next(i for i, line in enumerate(proxy.lines) if line["msg"] == "listening")
        assert proxy.lines.index(error) < started, "said at start, before any traffic"
        lost = [line for line in proxy.lines if line["msg"].startswith("key usage counts lost")]
        assert [line["encryptions"] for line in lost] == [12], "4 records, 3 fields each"
        assert sorted(p.name for p in (tmp_path / "secret").iterdir()) == ["keystore.json"]


class TestPhiKeys:
    def test_encrypt_counts_into_usage_file_and_list_reads_it(self, tmp_path, read_only):
        """`phi-keys encrypt` counts each value in keys.usage_file, beside a read-only keystore."""
        config, _ = _secret_env(tmp_path, "http://127.0.0.1:9", usage_file="./state/usage.json")
        prefix = read_only(tmp_path / "secret")
        for value in ("900-00-0001", "900-00-0002"):
            done = _encrypt(prefix, config, value)
            assert done.returncode == 0, done.stderr
            assert TOKEN_PATTERN.fullmatch(done.stdout.strip())
            assert _warnings(done.stderr) == []
        kid = _kid(config)
        assert read_usage(tmp_path / "state" / "usage.json") == {kid: 2}
        counts = _listed_counts(config)
        assert counts[kid] == 2
        assert sum(counts.values()) == 2
        checked = _run(prefix, PHI_PROXY, "check-config", "-c", str(config))
        assert f"usage counts:  {tmp_path / 'state' / 'usage.json'}" in checked.stdout
        assert "key usage counters cannot be saved" not in checked.stderr

    def test_unwritable_counts_are_a_warning_not_a_failure(self, tmp_path, read_only):
        """Without usage_file, `encrypt` still prints the token and warns; so does check-config."""
        config, _ = _secret_env(tmp_path, "http://127.0.0.1:9", usage_file=None)
        prefix = read_only(tmp_path / "secret")
        done = _encrypt(prefix, config, "900-00-0003")
        assert done.returncode == 0, done.stderr
        assert TOKEN_PATTERN.fullmatch(done.stdout.strip())
        (line,) = _warnings(done.stderr)
        assert line.startswith("phi-keys: warning: 1 encryption of this run could not be added")
        assert str(tmp_path / "secret" / "keystore.json.usage.json") in line
        assert "keys.usage_file" in line
        checked = _run(prefix, PHI_PROXY, "check-config", "-c", str(config))
        assert checked.returncode == 0, checked.stderr
        assert "warning: key usage counters cannot be saved" in checked.stderr
        assert "keys.usage_file" in checked.stderr
        assert "Traceback" not in done.stderr + checked.stderr


class TestCounter:
    def test_a_failing_file_is_logged_once_retried_sparingly_and_recovers(self, tmp_path, caplog):
        """One error for a run of failures; wake-ups every flush_every; all counts saved later."""
        caplog.set_level(logging.INFO)
        path = (
            tmp_path / "not-yet" / "usage.json"
        )  # its folder is missing: unwritable, even to root
        calls = []
        counter = UsageCounter(path, flush_every=2, on_due=lambda: calls.append(1))
        kid = "a" * 16
        counter.record(kid, 2)
        assert calls == [1]
        assert counter.flush() is None
        assert counter.problem is not None
        assert counter.problem.startswith(str(path))
        counter.record(kid)
        assert calls == [1], "a failed flush is not retried on every encryption"
        assert counter.flush() is None
        counter.record(kid, 2)
        assert calls == [1, 1]
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1
        assert "keys.usage_file" in errors[0].__dict__["fields"]["fix"]
        path.parent.mkdir()
        assert counter.flush() == {kid: 5}
        assert (counter.problem, counter.pending) == (None, 0)
        saved = [r for r in caplog.records if r.getMessage() == "key usage counters saved again"]
        assert [r.__dict__["fields"]["encryptions"] for r in saved] == [5]


async def test_changing_usage_file_needs_a_restart(live, caplog):
    """A reload does not move the counts to another file: it logs `restart required`."""
    caplog.set_level(logging.INFO)
    live.rewrite_config(keys={"usage_file": "./elsewhere.json"})
    await live.reloader.tick()
    warned = [r for r in caplog.records if "restart required" in r.getMessage()]
    assert [r.__dict__["fields"]["sections"] for r in warned] == [["keys.usage_file"]]
    assert live.runtime.usage.path == live.folder / "keystore.json.usage.json"

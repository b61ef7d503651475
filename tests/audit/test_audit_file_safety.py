"""The audit trail's files are what they claim: the trail, its keys, and a report safe to print.

`audit.path` naming a file that is not a trail is refused (nothing written, keys untouched);
audit and signing keys readable by others are refused; record ids carrying terminal escapes are
shown escaped by `phi-audit report`.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import resource
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from audit_helpers import TS, lines_of, phi_audit, settings_in, write_events
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from keys.config_file import load_section
from keys.kek import FileKek, generate_kek_file
from keys.settings import KeySettings, keystore_file
from proxy.audit import AuditError, FileSink, open_chain, trail_files, verify_files
from proxy.audit.events import RecordAccess, RequestEvent
from proxy.audit.factory import open_trail
from proxy.audit.report import align_columns
from proxy.audit.secrets import load_chain_key, load_signing_key
from proxy.audit.sink import NotAnAuditTrail
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

PHI_KEYS = Path(sys.executable).with_name("phi-keys")
NOT_A_TRAIL = "is not a phi-proxy audit trail"
KEY_ENV = "PHI_TEST_REVIEW_OPS_AUDIT_KEY"


def _payload(n: int = 0) -> dict[str, object]:
    return {"type": "grant_change", "ts": TS, "action": "add", "n": n}


# ---- F3: audit.path naming the KEK, the keystore or any other file --------------------------


@pytest.fixture
def key_folder(tmp_path, monkeypatch):
    """A KEK, a keystore with one practice, and the audit key in the environment (key_env)."""
    monkeypatch.setenv(KEY_ENV, base64.b64encode(os.urandom(32)).decode())
    generate_kek_file(tmp_path / "kek.b64")
    config = tmp_path / "proxy.yaml"
    config.write_text(
        "keys:\n  keystore: ./keystore.json\n  kek: {provider: file, path: ./kek.b64}\n"
    )
    store = keystore_file(load_section(config, "keys", KeySettings))
    store.create()
    store.add_practices(["practice-a"])
    return tmp_path


def _with_audit_path(folder: Path, target: str) -> Path:
    config = folder / "proxy.yaml"
    config.write_text(
        "keys:\n  keystore: ./keystore.json\n  kek: {provider: file, path: ./kek.b64}\n"
        f"audit: {{path: {target}, key_env: {KEY_ENV}, fsync: false}}\n"
    )
    return config


def _phi_keys(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
    return run_cli(
        [str(PHI_KEYS), "-c", str(config), *args],
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


class TestAuditPathIsNotATrail:
    @pytest.mark.parametrize("target", ["kek.b64", "keystore.json"])
    def test_the_sink_refuses_and_writes_nothing(self, key_folder, target):
        """A non-empty file whose last line is no audit event gets no line, and says so."""
        path = key_folder / target
        before = path.read_bytes()
        settings = settings_in(key_folder, path=target, key_env=KEY_ENV)
        with pytest.raises(NotAnAuditTrail, match=NOT_A_TRAIL) as caught:
            FileSink(path, fsync=False).append(
                open_chain(settings), [_payload()], ts=TS, force_checkpoint=False
            )
        assert "nothing was written" in str(caught.value)
        assert "check audit.path" in caught.value.strerror.lower()
        assert path.read_bytes() == before
        with pytest.raises(NotAnAuditTrail):
            FileSink(path).probe()  # /readyz reports the sink as not ready
        assert path.read_bytes() == before

    @pytest.mark.parametrize("target", ["./kek.b64", "./keystore.json"])
    def test_a_key_command_leaves_the_keys_usable(self, key_folder, target):
        """phi-keys rotate with audit.path on a key file: the change is made, the file intact."""
        kek_before = (key_folder / "kek.b64").read_bytes()
        config = _with_audit_path(key_folder, target)
        rotated = _phi_keys(config, "rotate", "--practice", "practice-a")
        assert rotated.returncode == 1
        assert "the change was made but could not be written to the audit trail" in (rotated.stderr)
        assert NOT_A_TRAIL in rotated.stderr
        assert (key_folder / "kek.b64").read_bytes() == kek_before
        listed = _phi_keys(config, "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [k["version"] for k in json.loads(listed.stdout)] == [1, 2]
        FileKek(key_folder / "kek.b64")  # still opens

    async def test_the_proxy_does_not_start_on_a_foreign_file(self, key_folder):
        """The start event cannot be written: the start fails and the KEK is untouched."""
        before = (key_folder / "kek.b64").read_bytes()
        settings = settings_in(key_folder, path="kek.b64", key_env=KEY_ENV, fsync=False)
        trail = open_trail(settings)
        assert trail is not None
        with pytest.raises(AuditError):
            await trail.start()
        assert (key_folder / "kek.b64").read_bytes() == before

    def test_a_symlinked_trail_is_not_followed(self, tmp_path):
        """audit.path as a symlink (to a trail, or anywhere) is refused; the target is kept."""
        settings = settings_in(tmp_path, fsync=False)
        write_events(settings, 2)
        real = settings.path.with_name("real.jsonl")
        settings.path.rename(real)
        settings.path.symlink_to(real)
        before = real.read_bytes()
        with pytest.raises(NotAnAuditTrail, match="symbolic link"):
            FileSink(settings.path, fsync=False).append(
                open_chain(settings), [_payload()], ts=TS, force_checkpoint=False
            )
        assert real.read_bytes() == before

    def test_a_real_trail_with_a_long_last_line_continues(self, tmp_path):
        """An event longer than one read block (a list of many records) is still the head."""
        settings = settings_in(tmp_path, fsync=False)
        chain, sink = open_chain(settings), FileSink(settings.path, fsync=False)
        big = {**_payload(), "records": ["r" * 40] * 5000}  # ~220 KB on one line
        sink.append(chain, [big], ts=TS, force_checkpoint=False)
        sink.append(chain, [_payload(1)], ts=TS, force_checkpoint=False)
        events = [orjson.loads(line) for line in lines_of(settings.path)]
        assert [e["type"] for e in events] == ["genesis", "grant_change", "grant_change"]
        result = verify_files(
            trail_files(settings.path), key=load_chain_key(settings), head_of=settings.path
        )
        assert result.problem is None

    def test_an_empty_file_still_starts_a_trail(self, tmp_path):
        """An empty file (new, or just rotated) is a trail's start, as before."""
        settings = settings_in(tmp_path, fsync=False)
        settings.path.touch(mode=0o600)
        write_events(settings, 1)
        assert orjson.loads(lines_of(settings.path)[0])["type"] == "genesis"


# ---- F4: the audit key and the checkpoint signing key must be private ------------------------


class TestKeyFileModes:
    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
    def test_a_readable_audit_key_is_refused(self, tmp_path, mode):
        settings = settings_in(tmp_path, fsync=False)
        write_events(settings, 1)  # creates the key 0600
        settings.key_file.chmod(mode)
        with pytest.raises(AuditError) as caught:
            load_chain_key(settings)
        message = str(caught.value)
        assert message.startswith(f"{settings.key_file}: the audit key (audit.key_file) is")
        assert f"(mode {mode:04o})" in message
        assert f"chmod 600 {settings.key_file}" in message
        assert "re-seal an edited audit trail" in message

    def test_verify_refuses_a_readable_audit_key(self, tmp_path):
        """phi-audit (a real process) exits 1 with the fix, instead of trusting that key."""
        config = tmp_path / "config.yaml"
        config.write_text("audit:\n  fsync: false\n")
        settings = settings_in(tmp_path, fsync=False)
        write_events(settings, 2)
        settings.key_file.chmod(0o644)
        result = phi_audit("verify", config=config)
        assert result.returncode == 1
        assert "the audit key (audit.key_file) is readable or writable by group or others" in (
            result.stderr
        )
        settings.key_file.chmod(0o600)
        assert phi_audit("verify", config=config).returncode == 0

    def test_a_readable_signing_key_is_refused(self, tmp_path):
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = tmp_path / "sign.pem"
        path.write_bytes(pem)
        path.chmod(0o644)
        with pytest.raises(AuditError, match=r"checkpoint signing key .* \(mode 0644\)"):
            load_signing_key(path)
        path.chmod(0o600)
        assert load_signing_key(path) is not None


# ---- F7: record ids with terminal escapes ----------------------------------------------------

EVIL_ID = (
    "p-1\x1b[2K\r\x1b[1A\x1b[2K\rhttps://idp.test|bob  practice-a  p-0001  ssn  1\nforged"
    "\u009b2J\u202e"
)
ALICE = "https://idp.test|alice"


@pytest.fixture
def evil_trail(tmp_path):
    """A trail holding one disclosure to alice of a record whose id a caller chose."""
    config = tmp_path / "config.yaml"
    config.write_text("audit:\n  fsync: false\n")
    settings = settings_in(tmp_path, fsync=False)
    event = RequestEvent(
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        request_id="r-1",
        subject=ALICE,
        client="127.0.0.1",
        method="GET",
        path="/api/patients",
        status=200,
        outcome="decrypted",
        decrypted={"ssn": 1},
        practices=("practice-a",),
        records=(RecordAccess("practice-a", EVIL_ID, ("ssn",)),),
    )
    FileSink(settings.path, fsync=False).append(
        open_chain(settings), [event.to_json()], ts=TS, force_checkpoint=False
    )
    return config


def _no_raw_controls(text: str) -> None:
    assert all(ch.isprintable() or ch == "\n" for ch in text), repr(text)


class TestReportEscapes:
    def test_the_table_shows_escapes_not_control_characters(self, evil_trail):
        result = phi_audit("report", config=evil_trail)
        assert result.returncode == 0, result.stderr
        _no_raw_controls(result.stdout)
        lines = result.stdout.splitlines()
        assert len(lines) == 3  # header, alice's one row, the summary: no forged row
        assert lines[1].startswith(ALICE)
        assert "p-1\\x1b[2K\\r\\x1b[1A\\x1b[2K\\rhttps://idp.test|bob" in lines[1]
        assert "\\nforged\\x9b2J\\u202e" in lines[1]

    def test_csv_cells_show_escapes(self, evil_trail):
        result = phi_audit("report", "--format", "csv", config=evil_trail)
        assert result.returncode == 0, result.stderr
        _no_raw_controls(result.stdout)
        header, row = list(csv.reader(io.StringIO(result.stdout)))
        assert header[2] == "record"
        assert row[0] == ALICE
        assert row[2].startswith("p-1\\x1b[2K\\r")

    def test_json_stays_valid_and_keeps_the_exact_id(self, evil_trail):
        result = phi_audit("report", "--format", "json", config=evil_trail)
        assert result.returncode == 0, result.stderr
        _no_raw_controls(result.stdout)
        [row] = json.loads(result.stdout)
        assert row["record"] == EVIL_ID
        assert row["subject"] == ALICE

    def test_align_columns_escapes_every_cell_and_keeps_columns(self):
        """`phi-grants review` prints through align_columns too."""
        lines = align_columns([("A", "B"), ("x\x1b[31m", "y"), ("\u202eabc", "z")])
        _no_raw_controls("\n".join(lines))
        assert lines[1] == "x\\x1b[31m  y"
        assert lines[2].startswith("\\u202eabc")
        assert lines[2].index("z") == lines[1].index("y")


class TestShortWrite:
    """A write cut short (disk full) leaves the trail as it was."""

    def test_a_short_write_leaves_no_partial_line_and_the_trail_continues(self, tmp_path):
        settings = settings_in(tmp_path, fsync=False)
        write_events(settings, 2)
        path = settings.path
        before = path.read_bytes()
        sink = FileSink(path, fsync=False)
        big = {"type": "grant_change", "ts": TS, "action": "add", "reason": "x" * 4000}
        old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
        old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, old_limit[1]))
        try:
            with pytest.raises(OSError, match="short write"):
                sink.append(open_chain(settings), [big], ts=TS, force_checkpoint=False)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)  # "space freed"
            signal.signal(signal.SIGXFSZ, old_handler)
        assert path.read_bytes() == before
        sink.probe()
        sink.append(open_chain(settings), [big], ts=TS, force_checkpoint=False)
        assert path.read_bytes().startswith(before)
        assert path.read_bytes().endswith(b"\n")

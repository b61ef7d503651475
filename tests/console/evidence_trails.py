"""Audit trails for the break-glass queue and incident view tests, written by the real audit code.

Events go through the proxy's own chain and file sink (`open_chain`, `FileSink.append`), as in
tests/audit, so they carry real sequence numbers, links, MACs and checkpoints; `phi_audit`
runs the real command over the same trail.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import orjson

from proxy.audit import AuditSettings, FileSink, open_chain
from proxy.audit.chain import canonical
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

TS = "2026-01-01T00:00:00.000Z"
AUDIT_YAML = "audit:\n  fsync: false\n  checkpoint_every: 5\n"


def write_config(folder: Path, extra: str = "") -> Path:
    """A config file with only an `audit:` section (plus `extra` YAML), in `folder`."""
    config = folder / "config.yaml"
    config.write_text(AUDIT_YAML + extra)
    return config


def audit_settings(config: Path) -> AuditSettings:
    from keys.config_file import load_section

    return load_section(config, "audit", AuditSettings)


def append(config: Path, payloads: list[dict], *, batch: int = 7) -> None:
    """Append `payloads` to the config's trail in batches, as the proxy's writer does."""
    settings = audit_settings(config)
    chain = open_chain(settings)
    sink = FileSink(settings.path, fsync=False)
    for start in range(0, len(payloads), batch):
        sink.append(chain, payloads[start : start + batch], ts=TS, force_checkpoint=False)


def request(
    ts: str,
    subject: str,
    records: dict[str, dict[str, list[str]]],
    *,
    unnamed: dict[str, int] | None = None,
    break_glass: dict | None = None,
    request_id: str = "req-1",
) -> dict:
    """A request event as the proxy writes it: practice → record → classes disclosed.

    `unnamed`: classes also disclosed from a record without an id (counted, not named).
    """
    decrypted: dict[str, int] = dict(unnamed or {})
    groups = []
    for practice, by_record in sorted(records.items()):
        for record, classes in sorted(by_record.items()):
            for c in classes:
                decrypted[c] = decrypted.get(c, 0) + 1
            groups.append(
                {"field_classes": sorted(classes), "practice": practice, "records": [record]}
            )
    event = {
        "type": "request",
        "ts": ts,
        "request_id": request_id,
        "subject": subject,
        "method": "GET",
        "path": "/api/patients/{id}",
        "status": 200,
        "decrypted": decrypted,
        "masked": {},
        "plaintext_kept": {},
        "practices": sorted(records) or ["practice-a"],
        "records": groups,
    }
    if break_glass is not None:
        event["break_glass"] = break_glass
    return event


def tamper_subject(config: Path, line: int, subject: str = "idp|mallory") -> Path:
    """Edit one event's subject in place (its MAC then fails); return the file."""
    path = audit_settings(config).path
    lines = path.read_bytes().splitlines(keepends=True)
    event = orjson.loads(lines[line - 1])
    event["subject"] = subject
    lines[line - 1] = canonical(event) + b"\n"
    path.write_bytes(b"".join(lines))
    return path


def trail_events(config: Path) -> list[dict]:
    path = audit_settings(config).path
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def phi_audit(config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`phi-audit -c CONFIG ARGS` as a real process; stdout as bytes (to compare byte for byte)."""
    argv = [sys.executable, "-m", "proxy.audit", "-c", str(config), *args]
    return run_cli(argv, timeout=120, check=False)


def wait_for_file(path: str) -> None:
    """Block until `path` exists (a gate a test opens; runs in the trail reader process)."""
    import time
    from pathlib import Path

    while not Path(path).exists():
        time.sleep(0.01)


def read_once_then_exit() -> None:
    """A multiprocessing child (as a proxy worker is) that uses the trail reader, then ends."""
    import asyncio
    import os

    from proxy.console.trail_reader import in_trail_process

    asyncio.run(in_trail_process(os.getpid))


def start_reader_then_wait(pid_file: str) -> None:
    """A multiprocessing child: start the trail reader, write its pid, wait to be killed."""
    import asyncio
    import os
    import time
    from pathlib import Path

    from proxy.console.trail_reader import in_trail_process

    reader = asyncio.run(in_trail_process(os.getpid))
    Path(pid_file).write_text(str(reader))
    while True:
        time.sleep(1)

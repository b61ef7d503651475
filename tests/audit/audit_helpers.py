"""Shared helpers for the audit tests: settings in a folder, a chain, written trails."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from blackbox_env import written

from proxy.audit import AuditSettings, FileSink, open_chain
from tests.cli_process import run_cli

__all__ = ["written"]  # shared with the black-box suites: wait for audit events, no sleep

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

TS = "2026-01-01T00:00:00.000Z"


def settings_in(folder: Path, **overrides) -> AuditSettings:
    return AuditSettings.model_validate(overrides, context={"base_dir": folder})


def write_events(settings: AuditSettings, count: int, *, start: int = 0) -> None:
    """Append `count` simple change events, one batch each (as separate CLIs would)."""
    chain = open_chain(settings)
    sink = FileSink(settings.path, fsync=False)
    for n in range(start, start + count):
        payload = {"type": "grant_change", "ts": TS, "action": "add", "n": n}
        sink.append(chain, [payload], ts=TS, force_checkpoint=False)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def phi_audit(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run phi-audit (`python -m proxy.audit`) as a real subprocess."""
    argv = [sys.executable, "-m", "proxy.audit"]
    if config is not None:
        argv += ["-c", str(config)]
    return run_cli([*argv, *args], text=True, timeout=60, check=False)


def now() -> datetime:
    return datetime.now(UTC)


async def until(condition, *, what: str, within: float = 30.0) -> None:
    """Wait until the async `condition()` is true (the audit writer runs every 20 ms)."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)

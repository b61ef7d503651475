"""Shared helpers for the audit tests: settings in a folder, a chain, written trails."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from proxy.audit import AuditSettings, FileSink, open_chain

if TYPE_CHECKING:
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
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60, check=False)


def now() -> datetime:
    return datetime.now(UTC)


async def written(env, *, within: float = 30.0) -> None:
    """Wait until the audit events of every request `env.get` was answered are in the trail.

    The proxy queues a request's event before it logs the access line, so once every answered
    request has its access line, one flush writes them all: a condition, not a sleep that a
    busy host may outlast. `within` bounds a failing test only.
    """
    deadline = time.monotonic() + within
    while not set(env.answered) <= env.access_lines.request_ids:
        assert time.monotonic() < deadline, "an answered request never got its access line"
        await asyncio.sleep(0.005)
    await env.runtime._audit.flush()


async def until(condition, *, what: str, within: float = 30.0) -> None:
    """Wait until the async `condition()` is true (the audit writer runs every 20 ms)."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)

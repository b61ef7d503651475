"""The console reads the trail in its own child process, at low priority, and outlives its death."""

from __future__ import annotations

import asyncio
import os
import signal
from functools import partial

import pytest
from evidence_trails import wait_for_file

from proxy.audit.errors import AuditError
from proxy.console.trail_reader import NICENESS, in_trail_process


async def test_the_work_runs_in_another_process_at_lower_priority():
    """One child, reused, at nice +10: a trail pass never competes with the proxy's requests."""
    pid = await in_trail_process(os.getpid)
    assert pid != os.getpid()
    assert await in_trail_process(os.getpid) == pid  # reused, not one process per page
    ours = os.nice(0)
    assert await in_trail_process(partial(os.nice, 0)) == min(ours + NICENESS, 19)


async def test_a_dead_reader_is_reported_then_replaced():
    """The page of the moment says the trail could not be read; the next one works again."""
    pid = await in_trail_process(os.getpid)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(AuditError, match="reload the page"):
        await in_trail_process(os.getpid)
    replaced = await in_trail_process(os.getpid)
    assert replaced not in {pid, os.getpid()}


async def test_a_cancelled_pass_stops_the_reader_at_once(tmp_path):
    """A page given up (or the proxy shutting down) does not wait for a long pass to finish."""
    pid = await in_trail_process(os.getpid)
    gate = tmp_path / "never-opened"
    task = asyncio.create_task(in_trail_process(partial(wait_for_file, str(gate))))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    replaced = await in_trail_process(os.getpid)  # the gate was never opened: a new child
    assert replaced not in {pid, os.getpid()}

"""The console reads the trail in its own child process, at low priority, and outlives its death."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

import pytest
from evidence_trails import read_once_then_exit, start_reader_then_wait, wait_for_file

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


def test_a_worker_that_used_the_reader_exits():
    """A proxy worker is a multiprocessing child; its exit must not wait on the idle reader."""
    worker = multiprocessing.get_context("spawn").Process(target=read_once_then_exit)
    worker.start()
    worker.join(60)  # a bound for a failing test only: it hung forever before the finalizer
    alive = worker.is_alive()
    if alive:
        worker.kill()
        worker.join()
    assert not alive
    assert worker.exitcode == 0


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
def test_the_reader_ends_when_its_worker_is_killed(tmp_path):
    """A SIGKILLed worker (OOM killer) cannot stop its reader; the kernel does, no orphan left."""
    pid_file = tmp_path / "reader.pid"
    worker = multiprocessing.get_context("spawn").Process(
        target=start_reader_then_wait, args=(str(pid_file),)
    )
    worker.start()
    deadline = time.monotonic() + 60  # a bound for a failing test only
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the worker never started its reader"
        time.sleep(0.01)
    reader = int(pid_file.read_text())
    worker.kill()
    worker.join()
    while _alive(reader):
        if time.monotonic() > deadline:
            os.kill(reader, signal.SIGKILL)
            pytest.fail("the reader outlived its killed worker")
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, or a process gone, is not running)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"

"""The console reads the trail in its own child process, at low priority, and outlives its death."""

from __future__ import annotations

import os
import signal
from functools import partial

import pytest

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

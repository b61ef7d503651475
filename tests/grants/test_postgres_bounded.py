"""A connection whose connect was given up just as it completed is closed, not leaked."""

import asyncio

import pytest

from proxy.grants.postgres_bounded import abandon

pytestmark = pytest.mark.asyncio


class _Connection:
    """Stands in for an asyncpg connection: all `abandon` may do with it is terminate it."""

    def __init__(self):
        self.terminated = False

    def terminate(self):
        self.terminated = True


async def test_a_connection_that_completed_as_it_was_abandoned_is_terminated():
    """The race of a store closing while its listener connects: the finished connect is closed."""
    conn = _Connection()

    async def connect():
        return conn

    task = asyncio.ensure_future(connect())
    await asyncio.sleep(0)  # the task has finished; nobody has taken its result
    assert task.done()
    abandon(task)
    await asyncio.sleep(0)
    assert conn.terminated


async def test_other_results_are_dropped_quietly():
    """Rows or counts from an abandoned query have nothing to close."""
    task = asyncio.ensure_future(asyncio.sleep(0, result=[1, 2]))
    await asyncio.sleep(0.01)
    abandon(task)
    await asyncio.sleep(0)

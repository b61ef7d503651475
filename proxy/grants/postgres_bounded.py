"""Waiting for a database call at most `timeout` seconds, without waiting for its clean-up.

`asyncio.wait_for` cancels the late call and then *waits until it has finished cancelling*. For
an asyncpg call on a connection whose network path has gone silent, that clean-up (sending a
cancel request, resetting the connection) can itself hang, so `wait_for` would not bound the
caller's wait at all. `within` gives up at the deadline: the late call is cancelled and left to
finish in the background, and the caller gets TimeoutError at once.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["abandon", "within"]

_T = TypeVar("_T")
_ABANDONED: set[asyncio.Future[Any]] = set()


def _observe(task: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(task)
    if task.cancelled() or task.exception() is not None:  # retrieved: asyncio logs nothing
        return
    # A connect that completed just as it was given up (a store closing while its change
    # listener connects): nobody will ever use or close that connection, so close it here.
    terminate = getattr(task.result(), "terminate", None)
    if callable(terminate):
        terminate()


def abandon(task: asyncio.Future[Any]) -> None:
    """Cancel `task` and let it finish in the background; its outcome is discarded."""
    task.cancel()
    _ABANDONED.add(task)  # keep a reference until done, or it may be garbage-collected
    task.add_done_callback(_observe)


async def within(timeout: float, awaitable: Awaitable[_T]) -> _T:  # noqa: ASYNC109
    """The result of `awaitable`, or TimeoutError once `timeout` seconds have passed."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        abandon(task)
        raise
    if not done:
        abandon(task)
        raise TimeoutError(f"no answer within {timeout:g} s")
    return task.result()

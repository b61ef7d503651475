"""Where the console reads the audit trail: one process of its own, at low priority, reused.

Verifying a trail is seconds of Python work. The console is served by the proxy's own worker
processes, so that work must not run there: not on the event loop (nothing else would be
answered), and not on a thread either, where it holds the interpreter lock against the proxied
requests of the same worker (measured on a shared 2-core host, 250,000 events: 5 s on a thread
with the loop slowed by half; 1.1 s here, the loop undisturbed, as the child may fork the
verifier's own workers). It
runs in one child process per worker, started on first use with `spawn` (forking a process that
has threads is unsafe), lowered to nice 10 so the proxy's own requests come first, and reused:
pages opened at once take turns. If the child dies, the next page starts a new one and this one
says the trail could not be read. The child imports no entry script: `spawn` skips a package's
`__main__` (`python -m proxy`) and `phi-proxy`'s script guards its `main()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Final, TypeVar

from proxy.audit.errors import AuditError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["NICENESS", "in_trail_process"]

#: How much lower than the proxy the reader runs (os.nice increment).
NICENESS: Final = 10

_T = TypeVar("_T")


def _lower_priority() -> None:
    """In the child: yield the CPU to the proxy's own processes."""
    os.nice(NICENESS)


class _Reader:
    """The child process, started on first use and replaced after it dies or is stopped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._pid: int | None = None

    def pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=1,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_lower_priority,
                )
                self._pid = None
            return self._pool

    async def started(self, pool: ProcessPoolExecutor) -> None:
        """Start `pool`'s child if need be and learn its pid (so that it can be stopped)."""
        if self._pid is None:
            pid = await asyncio.get_running_loop().run_in_executor(pool, os.getpid)
            with self._lock:
                if self._pool is pool:
                    self._pid = pid

    def discard(self, pool: ProcessPoolExecutor, *, kill: bool = False) -> None:
        """Forget `pool` (the next call starts a new child); `kill`: stop its child now."""
        with self._lock:
            if self._pool is not pool:
                return
            pid, self._pool, self._pid = self._pid, None, None
        if kill and pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pool.shutdown(wait=False, cancel_futures=True)


_READER = _Reader()


async def in_trail_process(work: Callable[[], _T]) -> _T:
    """Run `work` (picklable: a module-level function and its arguments) in the reader process.

    AuditError when the reader process died meanwhile (the console shows it as "the audit trail
    cannot be read right now"; the next page starts a new reader). When the caller is cancelled
    (the proxy shutting down, a request given up), the child is stopped at once: a pass over a
    large trail must not hold up the worker's exit.
    """
    pool = _READER.pool()
    try:
        await _READER.started(pool)
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, work)
        except asyncio.CancelledError:
            _READER.discard(pool, kill=True)
            raise
    except BrokenProcessPool:
        _READER.discard(pool)
        raise AuditError(
            "the console's trail reader process stopped unexpectedly (the proxy's log may say "
            "why); reload the page to start a new one"
        ) from None

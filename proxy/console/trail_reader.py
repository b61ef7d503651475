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
says the trail could not be read; when the worker exits, the child is stopped first. The child
imports no entry script: `spawn` skips a package's `__main__` (`python -m proxy`) and
`phi-proxy`'s script guards its `main()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import multiprocessing.util
import os
import signal
import sys
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
#: prctl(2) option: the signal this process gets when its parent dies (Linux).
_PR_SET_PDEATHSIG: Final = 1


def _child_setup() -> None:
    """In the child: yield the CPU to the proxy, and end with the worker however it ends.

    A worker that exits normally stops the child (the finalizer below); one that is killed
    (SIGKILL, the OOM killer) cannot, so on Linux the kernel is asked to kill the child when its
    parent dies (PR_SET_PDEATHSIG); without it an orphaned reader would wait for work forever.
    """
    os.nice(NICENESS)
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before prctl took effect
        os._exit(0)


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
                    initializer=_child_setup,
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

    def close(self) -> None:
        """Stop the child now: the process is exiting, and no pass is worth delaying that."""
        with self._lock:
            pool = self._pool
        if pool is not None:
            self.discard(pool, kill=True)
            # Join the pool's manager thread before the interpreter's exit hook for process
            # pools runs: otherwise the thread's clean-up after the kill can close a wake-up
            # pipe while that hook writes to it (EBADF, and the worker exits with status 1).
            pool.shutdown(wait=True)


_READER = _Reader()
# A proxy worker is itself a multiprocessing child: when it exits, multiprocessing joins its
# children before concurrent.futures would shut the pool down, and the idle reader would wait
# for work forever. This finalizer (run first, priority >= 0) stops the reader; in a process
# not started by multiprocessing it runs at exit, after the pool's own shutdown, harmlessly.
multiprocessing.util.Finalize(None, _READER.close, exitpriority=10)


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

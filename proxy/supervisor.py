"""The `serve --workers N` supervisor: N worker processes, replaced when one dies.

A worker that dies (the OOM killer, a crash) would otherwise leave fewer processes serving
while the pod still looks ready. The supervisor starts the workers (spawned, so none inherits
the supervisor's state), forwards SIGHUP to each (every worker reloads its own keyring), turns
SIGTERM/SIGINT into a graceful stop of all, and starts a replacement for any worker that exits
while it is not stopping. Workers that keep dying (RESTART_LIMIT within RESTART_WINDOW seconds)
stop the whole proxy with exit 1 instead of a restart loop. A worker whose supervisor is
killed stops too (proxy.serve watches the spawn pipe), so no orphan keeps the port.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
from typing import TYPE_CHECKING, Final

from proxy import metrics

if TYPE_CHECKING:
    from collections.abc import Callable
    from multiprocessing.process import BaseProcess

__all__ = ["RESTART_LIMIT", "RESTART_WINDOW", "Supervisor"]

_log = logging.getLogger("phi_proxy")

#: More worker replacements than this within RESTART_WINDOW seconds: give up (exit 1).
RESTART_LIMIT: Final = 5
RESTART_WINDOW: Final = 60.0


class Supervisor:
    """Runs `workers` copies of `target` (a picklable callable) until told to stop."""

    def __init__(self, target: Callable[[], None], workers: int) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._target = target
        self._workers = workers
        self._processes: list[BaseProcess] = []
        self._restarts: list[float] = []
        self._stopping = False
        self._gave_up = False

    def run(self) -> int:
        """Start the workers, keep them running, and return the exit status once all ended."""
        # Before any worker exists: a SIGTERM during start-up must stop what was started.
        signal.signal(signal.SIGHUP, self._reload)
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for _ in range(self._workers):
            if not self._stopping:
                self._processes.append(self._start())
        while True:
            alive = [p for p in self._processes if p.is_alive()]
            if self._stopping and not alive:
                break
            if self._stopping or len(alive) == len(self._processes):
                multiprocessing.connection.wait([p.sentinel for p in alive])
            else:
                self._replace_exited()
        ended_badly = any(p.exitcode not in (0, -signal.SIGTERM) for p in self._processes)
        return 1 if ended_badly or self._gave_up else 0

    def _start(self) -> BaseProcess:
        process = self._context.Process(target=self._target)
        process.start()
        return process

    def _replace_exited(self) -> None:
        for index, process in enumerate(self._processes):
            if process.is_alive() or self._stopping:
                continue
            now = time.monotonic()
            self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW]
            if len(self._restarts) >= RESTART_LIMIT:
                _log.error(
                    "workers keep exiting (%d replacements within %d s); stopping the proxy: "
                    "see the workers' error lines above",
                    len(self._restarts),
                    RESTART_WINDOW,
                )
                self._gave_up = True
                self._stop(signal.SIGTERM, None)
                return
            _log.warning(
                "worker %s exited (code %s); starting a replacement", process.pid, process.exitcode
            )
            self._restarts.append(now)
            if process.pid is not None:
                metrics.worker_exited(process.pid)
            metrics.current().worker_restarted()
            self._processes[index] = self._start()

    def _stop(self, _signum: int, _frame: object) -> None:
        self._stopping = True
        for process in self._processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: each worker finishes its in-flight requests

    def _reload(self, _signum: int, _frame: object) -> None:
        for process in self._processes:
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGHUP)  # each worker reloads its own keyring

"""One process or several: where the metric values live, and the shared folder's lifecycle.

With `serve --workers N` a scrape reaches one worker, chosen by the kernel, so every worker's
counts must be visible to each of them. prometheus-client's multiprocess mode does that: each
process writes its values to memory-mapped files in one folder and the answering worker reads
them all. `serve` creates that folder (mkdtemp: 0700, a fresh random name, so no other user can
read or plant values and no earlier run's counts leak in), hands it to the workers, and removes
it when it stops. A single process keeps its values in memory and needs no folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from prometheus_client import values
from prometheus_client.multiprocess import mark_process_dead

from proxy.metrics.catalog import Metrics

__all__ = [
    "ENV",
    "create_shared_folder",
    "current",
    "install",
    "remove_shared_folder",
    "shared_folder",
    "worker_exited",
]

#: The variable prometheus-client reads to find the folder (spawned workers inherit it).
ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class _Installed:
    """What `install` chose for this process."""

    metrics: Metrics | None = None
    folder: Path | None = None


def create_shared_folder() -> Path:
    """A new private (0700) folder for the workers' metric files."""
    return Path(tempfile.mkdtemp(prefix="phi-proxy-metrics-"))


def remove_shared_folder(folder: Path) -> None:
    """Delete the folder and the workers' files in it (best effort: they hold counts only)."""
    shutil.rmtree(folder, ignore_errors=True)


def install(folder: Path | None) -> Metrics:
    """Create this process's metrics: in `folder` (one of several processes) or in memory.

    Must run before any metric is counted in this process. The value class is chosen here,
    not from the environment at import time, so a stray PROMETHEUS_MULTIPROC_DIR cannot switch
    a single process to files, and a worker does not depend on import order.
    """
    if folder is None:
        os.environ.pop(ENV, None)
        values.ValueClass = values.MutexValue
    else:
        os.environ[ENV] = str(folder)
        values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]
    metrics = Metrics()
    _Installed.metrics, _Installed.folder = metrics, folder
    return metrics


def current() -> Metrics:
    """This process's metrics (installed in memory on first use if nothing installed them)."""
    metrics = _Installed.metrics
    return install(None) if metrics is None else metrics


def shared_folder() -> Path | None:
    """The multiprocess folder this process writes to, or None (values in memory)."""
    return _Installed.folder


def worker_exited(pid: int) -> None:
    """Forget an exited worker's gauges ("live" modes); its counters keep counting in the sum."""
    folder = shared_folder()
    if folder is not None:
        mark_process_dead(pid, str(folder))  # type: ignore[no-untyped-call]

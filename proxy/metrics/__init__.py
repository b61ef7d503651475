"""Prometheus metrics: counts and states an operator alerts on, never who or which record.

One `Metrics` object per process (`current()`), created by `install()` once the process knows
whether it is one of several workers. Labels come only from closed sets: outcome codes, status
classes, configured route templates, configured field classes, the keystore's practices
(anything else is `other`), reason codes. No subject, record id, token or path is ever a label.

With `serve --workers N` every worker writes its values to a private folder (prometheus-client's
multiprocess mode) and whichever worker answers the scrape adds them all up; see
docs/operations.md ("Metrics") for why, and for what each metric means.
"""

from __future__ import annotations

from proxy.metrics.catalog import Metrics
from proxy.metrics.processes import (
    create_shared_folder,
    current,
    install,
    remove_shared_folder,
    worker_exited,
)

__all__ = [
    "Metrics",
    "create_shared_folder",
    "current",
    "install",
    "remove_shared_folder",
    "worker_exited",
]

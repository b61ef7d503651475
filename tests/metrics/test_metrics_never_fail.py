"""Counting never fails what it counts: a metrics error is logged (once a minute), not raised.

Here the `--workers` value folder is gone (as when /tmp is full or wiped), so the first key-usage
gauge's value file cannot be created.
"""

from __future__ import annotations

import logging

import pytest

from proxy import metrics
from proxy.accesslog import AccessRecord


@pytest.fixture
def files_gone(tmp_path):
    """Metrics in multiprocess mode whose folder was removed; memory mode again afterwards."""
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o700)
    counted = metrics.install(folder)
    metrics.remove_shared_folder(folder)
    try:
        yield counted
    finally:
        metrics.install(None)


def test_a_value_that_cannot_be_written_is_logged_once_and_not_raised(files_gone, caplog):
    caplog.set_level(logging.ERROR)
    files_gone.key_usage("practice-a", 10, 100)  # its file cannot be created: fails
    files_gone.key_usage("practice-b", 10, 100)  # fails again, not logged again
    record = AccessRecord("0123456789abcdef", "GET", "/p", None, 0.0)
    record.status = 200
    files_gone.request(record, 0.01)  # files opened before the folder went: still counted
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("metrics:")]
    assert len(lines) == 1
    assert "requests are unaffected" in lines[0]

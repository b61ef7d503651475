"""A real proxy with an `audit:` section, in front of the black-box suite's scripted portal."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "blackbox"))

import blackbox_env as blackbox

AUDIT = {
    "flush_interval": 20,
    "fsync": False,
    "checkpoint_every": 5,
    "alerts": {"masked_burst_threshold": 3, "masked_burst_window_seconds": 60},
}


@pytest.fixture
def audit_overrides():
    """The `audit:` section of the test config (a test may override this fixture)."""
    return dict(AUDIT)


@pytest.fixture
async def audit_env(tmp_path, audit_overrides):
    """Like the black-box `proxy_env`, with the audit section and a handle on the runtime."""
    async with blackbox.running_proxy_env(tmp_path, overrides={"audit": audit_overrides}) as env:
        yield env
    _assert_no_planted_phi(tmp_path)


def _assert_no_planted_phi(folder: Path) -> None:
    for path in folder.glob("audit.jsonl*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for value in blackbox.PLANTED:
                assert value not in text, f"a planted PHI value reached {path.name}"


@pytest.fixture(autouse=True)
def _no_planted_phi_in_logs(caplog):
    """After every audit test, no planted PHI value appears in any captured log record."""
    caplog.set_level(logging.DEBUG)
    yield
    blackbox.assert_no_planted_phi_in(caplog.records)

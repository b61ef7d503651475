"""A real proxy in front of a real (scripted) portal, with real keys, JWTs and SQLite grants.

Every black-box test talks HTTP to the proxy and asserts on the bytes that come back, or on
what the portal received.
"""

from __future__ import annotations

import logging

import pytest
from blackbox_env import (
    assert_no_planted_phi_in,
    running_proxy_env,
)


@pytest.fixture
async def proxy_env(tmp_path):
    async with running_proxy_env(tmp_path) as env:
        yield env


@pytest.fixture(autouse=True)
def _no_planted_phi_in_logs(caplog):
    """After every black-box test, no planted PHI value appears in any captured log record."""
    caplog.set_level(logging.DEBUG)
    yield
    assert_no_planted_phi_in(caplog.records)

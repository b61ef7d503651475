"""Two real `phi-proxy serve` processes sharing one PostgreSQL grant store, in front of one portal.

The PostgreSQL helpers (reachability, per-test schema, TCP forwarder) live in tests/grants; they
are put on the import path here so both suites use the same ones.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "grants"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "blackbox"))  # serve_process

import pytest
from fleet_harness import FleetEnv
from grants_forwarder import Forwarder
from grants_pg import drop_schema, new_schema, require_postgres


@pytest.fixture
async def forwarder():
    """A TCP forwarder to the test PostgreSQL; the test can stop it to "take the database away"."""
    await require_postgres()
    fwd = Forwarder()
    await fwd.start()
    yield fwd
    await fwd.stop()


@pytest.fixture
async def fleet(tmp_path):
    """Keys, JWKS, a portal and a fresh grant schema; start proxies with `await fleet.proxy()`."""
    await require_postgres()
    schema = new_schema()
    env = FleetEnv(tmp_path, schema)
    await env.open()
    try:
        yield env
    finally:
        await env.close()
        await drop_schema(schema)

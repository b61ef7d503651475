"""Conventions every test follows so that `make test` can run them in parallel (pytest-xdist).

This file sits at the repository root, not in tests/, so that pytest puts the root on sys.path:
with tests/ there, the folder tests/keys would shadow the `keys` package (`import keys` would
give an empty namespace package).

`make test` runs pytest with `-n 2 --dist loadscope`: the tests are spread over worker
processes that run at the same time, on a host that may be busy. A test written as below runs
the same alone (`pytest tests/x/test_y.py`) and under xdist (`pytest -n 2 tests/x`):

- Ports: never a fixed port. Bind port 0 (aiohttp's `TestServer`, `admin: {port: 0}`) or ask the
  OS for a free one (`free_port()` helpers) right before starting the process that binds it.
  A fixed port number may appear in a config that is only parsed, never bound.
- Files: only under `tmp_path` / `tmp_path_factory` (each worker has its own base folder), never
  in the repository or a fixed /tmp path.
- PostgreSQL: use `PHI_TEST_POSTGRES_DSN` (tests/grants/grants_pg.py: `DSN`, `require_postgres`,
  `new_schema`). Under xdist each worker gets a database of its own, made here and dropped at
  the end (`phi_test_<run>_<worker>`); inside it each test still makes its own schema or
  uniquely named tables. Never assume the database `test` itself, or another test's tables.
  (A run killed with SIGKILL leaves its `phi_test_<run>_gw<N>` databases: drop them by hand.)
- SoftHSM2 and KMS: the session fixtures in tests/keys/kek_backends.py give each worker its own
  token folder and its own moto server; each test makes its own key in them.
- Waiting: wait for a condition (a log line, a file's contents, a port answering, a store's
  state), with a generous bound, never for a fixed time: under xdist a 2-core host runs several
  tests at once and anything can take a few times longer than when run alone. No retries.
  For audit events of requests made with `ProxyEnv.get`: `await written(env)` (blackbox_env).
- Commands: run `phi-keys`, `phi-grants`, `phi-audit` and `phi-proxy check-config` with
  `tests.cli_process.run_cli` (same arguments as `subprocess.run`; a real process forked from a
  pre-imported helper, ~20 ms instead of ~0.5 s of start-up), and `phi-proxy serve` with
  `start_cli` (as `asyncio.create_subprocess_exec`). Use `subprocess` for what only a new
  interpreter shows: the console script itself, its imports, a closed stdout.
- Expensive set-up that is the same for many tests (RSA keys, keystores, issuers) may be a
  session-scoped fixture as long as no test changes it; tests that change it get their own.
- `--dist loadscope` sends a class's tests (or a module's test functions) to one worker, in
  order, so a class- or module-scoped fixture is made once. Put tests that share a costly
  module fixture in one class; a session fixture is made once per worker that needs it.
  (`xdist_group` marks do nothing: pytest-xdist 3.8's `loadgroup` does not work with pytest 9.)
  The modules in WHOLE_MODULE_UNITS below run whole on one worker instead: their module-scoped
  fixtures (a console stack and browser, a built wheel, a signed trail) cost seconds each.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import HealthCheck, settings

# Hypothesis: no per-example deadline and no "too slow" health check. Both measure wall time,
# which under xdist on a busy host says more about the neighbours than about the code (a timed
# assertion in disguise). Example counts stay as each test sets them.
settings.register_profile("phi-proxy", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "phi-proxy"))

#: The server and database the PostgreSQL tests use (CI: 127.0.0.1:5432, database `test`).
BASE_DSN = os.environ.get("PHI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")


#: Test modules (or folders) that `--dist loadscope` sends to one worker whole, not class by
#: class, so that their module-scoped fixtures are made once per run, not once per worker.
WHOLE_MODULE_UNITS = (
    "tests/console/",
    "tests/demo/test_dockerfile.py",
    "tests/audit/test_audit_segments.py",
    "tests/cli/test_cli_consistency.py",
)


def pytest_xdist_make_scheduler(config, log):
    """loadscope, except that the modules in WHOLE_MODULE_UNITS are one unit each."""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WholeModules(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(WHOLE_MODULE_UNITS):
                return nodeid.split("::", 1)[0]
            return super()._split_scope(nodeid)

    return WholeModules(config, log)


def _worker_database() -> str | None:
    """This xdist worker's own database name (None when pytest runs without xdist)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return None
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:10]
    return f"phi_test_{run}_{worker}".lower()


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


WORKER_DATABASE = _worker_database()
if WORKER_DATABASE is not None:
    # Set before any test module reads it (and inherited by the processes tests start), so every
    # PostgreSQL test of this worker and its `phi-proxy` / `phi-keys` subprocesses use it.
    os.environ["PHI_TEST_POSTGRES_DSN"] = _with_database(BASE_DSN, WORKER_DATABASE)


async def _admin(sql: str) -> bool:
    """Run `sql` on the base database; False when the server does not answer (tests will say)."""
    try:
        import asyncpg
    except ImportError:
        return False
    try:
        conn = await asyncpg.connect(BASE_DSN, timeout=5)
    except Exception:  # noqa: BLE001 - unreachable: the PostgreSQL tests skip or fail with why
        return False
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
    return True


@pytest.fixture(scope="session", autouse=True)
def _worker_postgres_database():
    """Under xdist: this worker's PostgreSQL database, created first and dropped at the end."""
    if WORKER_DATABASE is None:
        yield
        return
    try:
        made = asyncio.run(_admin(f'CREATE DATABASE "{WORKER_DATABASE}"'))
    except Exception as exc:  # noqa: BLE001 - reported with what to do
        pytest.fail(
            f"cannot create this test worker's PostgreSQL database {WORKER_DATABASE!r} "
            f"({type(exc).__name__}: {exc}); the test role needs CREATEDB, or run pytest "
            "without -n to use the database in PHI_TEST_POSTGRES_DSN itself",
            pytrace=False,
        )
    yield
    if made:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{WORKER_DATABASE}" WITH (FORCE)'))

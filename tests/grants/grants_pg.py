"""Reaching the test PostgreSQL server: skip with a reason, or fail when CI requires it.

Tests use PHI_TEST_POSTGRES_DSN (default postgresql://postgres@127.0.0.1:5432/test). Each test
gets its own schema (phi_test_<random>), dropped afterwards, so runs never see each other's rows.
"""

import asyncio
import os
import secrets

import pytest

DSN = os.environ.get("PHI_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
_reachable: dict[str, str | None] = {}


async def _probe() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install -e '.[postgres]')"
    try:
        conn = await asyncpg.connect(DSN, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{exc.__class__.__name__}: {exc}"
    await conn.close()
    return None


async def require_postgres() -> None:
    """Skip the test when PostgreSQL is unreachable, or fail if PHI_TEST_REQUIRE_POSTGRES=1."""
    if DSN not in _reachable:
        _reachable[DSN] = await _probe()
    problem = _reachable[DSN]
    if problem is None:
        return
    where = DSN.split("@")[-1]
    if os.environ.get("PHI_TEST_REQUIRE_POSTGRES") == "1":
        pytest.fail(
            f"PostgreSQL at {where} is required (PHI_TEST_REQUIRE_POSTGRES=1) but unreachable: "
            f"{problem}",
            pytrace=False,
        )
    pytest.skip(
        f"PostgreSQL not reachable at {where} ({problem}); set PHI_TEST_POSTGRES_DSN or start "
        "it (CI sets PHI_TEST_REQUIRE_POSTGRES=1 to make this a failure)"
    )


def new_schema() -> str:
    """A schema name no other test run uses."""
    return f"phi_test_{secrets.token_hex(6)}"


async def drop_schema(schema: str) -> None:
    """Drop a test schema and everything in it."""
    import asyncpg

    conn = await asyncpg.connect(DSN, timeout=5)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def wait_until(predicate, *, within: float = 30.0, what: str) -> float:
    """Poll `predicate` every 5 ms until true; return the seconds it took, or fail.

    `within` is only a bound for a failing test: generous, as other tests share the host.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > within:
            pytest.fail(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.005)
    return loop.time() - start

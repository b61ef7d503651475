"""Fixtures for the key-lifecycle tests: a config folder with real KEK, keystore and JWKS."""

from __future__ import annotations

import os
import uuid

import pytest
from lifecycle_helpers import make_env

from keys.settings import keystore_file
from proxy.settings import load_settings

POSTGRES_DSN = os.environ.get("PHI_TEST_POSTGRES_DSN", "postgresql://127.0.0.1:5432/test")


@pytest.fixture
def env(tmp_path):
    """(folder, config path, issuer): three practices with one active key each."""
    config, issuer = make_env(tmp_path, "http://127.0.0.1:9")
    return tmp_path, config, issuer


@pytest.fixture
def store(env):
    """The KeystoreFile the `env` config names."""
    return keystore_file(load_settings(env[1]).keys)


def _postgres_reachable() -> str | None:
    try:
        import asyncio

        import asyncpg

        async def ping() -> None:
            conn = await asyncpg.connect(POSTGRES_DSN, timeout=3)
            await conn.close()

        asyncio.run(ping())
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"{type(exc).__name__}"
    return None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """(dsn, table name, connect()) for SQLite, and for PostgreSQL when reachable."""
    if request.param == "sqlite":
        db = tmp_path / "portal.db"
        db.touch()
        yield f"sqlite:///{db}", "patients", ("sqlite", db)
        return
    problem = _postgres_reachable()
    if problem is not None:
        if os.environ.get("PHI_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL at {POSTGRES_DSN} is required but unreachable ({problem})")
        pytest.skip(
            f"PostgreSQL at {POSTGRES_DSN} unreachable ({problem}); set "
            "PHI_TEST_POSTGRES_DSN or start it to run the PostgreSQL variant"
        )
    table = f"lifecycle_{uuid.uuid4().hex[:12]}"
    yield POSTGRES_DSN, table, ("postgresql", POSTGRES_DSN)
    import asyncio

    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP TABLE IF EXISTS "{table}"')
            # A job that was refused before it started never made the progress table.
            if await conn.fetchval("SELECT to_regclass('phi_keys_progress')") is not None:
                await conn.execute(
                    "DELETE FROM phi_keys_progress WHERE job LIKE $1", f"%:{table}:%"
                )
        finally:
            await conn.close()

    asyncio.run(drop())


@pytest.fixture
async def live(tmp_path):
    """A real proxy (in this process) with a Reloader, in front of a SQLite-backed portal."""
    import aiohttp
    from aiohttp.test_utils import TestServer
    from lifecycle_helpers import SQLitePortal, config_dict, grant, write_config

    from proxy.app import build_app
    from proxy.reload import Reloader
    from proxy.runtime import Runtime

    portal = SQLitePortal(tmp_path / "portal.db")
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    upstream = str(portal_server.make_url("")).rstrip("/")
    config, issuer = make_env(tmp_path, upstream, watch_interval=3600)
    runtime = Runtime(load_settings(config))
    proxy_server = TestServer(build_app(runtime), host="127.0.0.1")
    await proxy_server.start_server()
    reloader = Reloader(runtime, config)
    await reloader.start(signals=False)
    await grant(tmp_path, "alice", "practice-a")
    await grant(tmp_path, "alice", "practice-b")
    http = aiohttp.ClientSession()
    handle = Live(
        folder=tmp_path,
        config=config,
        issuer=issuer,
        runtime=runtime,
        reloader=reloader,
        url=str(proxy_server.make_url("")).rstrip("/"),
        http=http,
        upstream=upstream,
        db=portal.db,
    )
    handle.rewrite_config = lambda **changes: write_config(
        tmp_path, _merge(config_dict(upstream, watch_interval=3600), changes)
    )
    try:
        yield handle
    finally:
        await http.close()
        await reloader.stop()
        await proxy_server.close()
        await portal_server.close()


def _merge(base: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class Live:
    """Handles on the live proxy: post/get helpers that authenticate as a subject."""

    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)

    def headers(self, sub: str | None) -> dict[str, str]:
        from lifecycle_helpers import bearer

        return {} if sub is None else bearer(self.issuer, sub)

    async def post_patient(self, practice: str, record: dict, *, sub: str = "alice") -> int:
        async with self.http.post(
            f"{self.url}/api/practices/{practice}/patients",
            json=record,
            headers=self.headers(sub),
        ) as response:
            await response.read()
            return response.status

    async def get_patient(self, pid: str, *, sub: str | None = "alice") -> tuple[int, dict]:
        async with self.http.get(
            f"{self.url}/api/patients/{pid}", headers=self.headers(sub)
        ) as response:
            body = await response.json(content_type=None)
            return response.status, body


@pytest.fixture
def read_only():
    """A function giving the argv prefix under which a folder is read-only (read_only_mount)."""
    from read_only_mount import read_only_prefix, restore

    folders = []

    def make(folder):
        folders.append(folder)
        return read_only_prefix(folder)

    yield make
    for folder in folders:
        restore(folder)

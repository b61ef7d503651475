"""Store factories for the reusable grant-store contract suite (SQLite and PostgreSQL)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blackbox"))  # serve_process

import pytest
import pytest_asyncio
from grants_backends import PostgresBackend, SQLiteBackend
from grants_pg import require_postgres

# Each entry builds stores that share one backing database, so a test can open a second,
# independent reader.
STORE_FACTORIES = [
    pytest.param(SQLiteBackend, id="sqlite"),
    pytest.param(PostgresBackend, id="postgres", marks=pytest.mark.postgres),
]


@pytest_asyncio.fixture(params=STORE_FACTORIES)
async def backend(request, tmp_path):
    """The backing database of one test, for every store kind."""
    if request.param is PostgresBackend:
        await require_postgres()
    made = request.param(tmp_path)
    yield made
    await made.cleanup()


@pytest_asyncio.fixture
async def open_store(backend):
    """A function opening a store on the test's shared database; all are closed afterwards."""
    opened = []

    def opener(**options):
        store = backend.make(**options)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def store(open_store):
    """A store on the shared test database."""
    return open_store()

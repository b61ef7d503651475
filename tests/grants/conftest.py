"""Store factories for the reusable grant-store contract suite."""

import pytest
import pytest_asyncio

from proxy.grants import SQLiteGrantStore


def _sqlite_factory(tmp_path):
    def make(**options):
        return SQLiteGrantStore(tmp_path / "grants.sqlite3", **options)

    return make


# Each entry builds stores that share one backing database, so a test can open a second,
# independent reader. A PostgreSQL factory joins this list later, marked `postgres`.
STORE_FACTORIES = [pytest.param(_sqlite_factory, id="sqlite")]


@pytest_asyncio.fixture(params=STORE_FACTORIES)
async def open_store(request, tmp_path):
    """A function opening a store on the test's shared database; all are closed afterwards."""
    make = request.param(tmp_path)
    opened = []

    def opener(**options):
        store = make(**options)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def store(open_store):
    """A store on the shared test database."""
    return open_store()

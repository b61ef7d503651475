"""The backing databases the grant-store contract suite runs against (see conftest.py)."""

import contextlib

from grants_pg import DSN, drop_schema, new_schema, wait_until

from proxy.grants import SQLiteGrantStore


class SQLiteBackend:
    """Stores on one SQLite file; a change is visible to every store object at once."""

    def __init__(self, tmp_path):
        self.path = tmp_path / "grants.sqlite3"

    def make(self, **options):
        return SQLiteGrantStore(self.path, **options)

    async def ready(self, store):
        """Nothing to wait for."""

    @contextlib.asynccontextmanager
    async def change_seen_by(self, _store):
        """A committed change is visible on the next call: nothing to wait for."""
        yield

    async def cleanup(self):
        """The file goes with tmp_path."""


class PostgresBackend:
    """Stores on one fresh PostgreSQL schema; changes reach other stores by NOTIFY."""

    def __init__(self, _tmp_path):
        self.schema = new_schema()

    def make(self, **options):
        from proxy.grants.postgres_store import PostgresGrantStore

        options.setdefault("timeout", 5.0)
        return PostgresGrantStore(DSN, schema=self.schema, **options)

    async def ready(self, store):
        """Wait until `store` LISTENs, so its cache is in use (else tests would prove nothing)."""
        await store.ping()
        await wait_until(lambda: store.listener.listening, what="the grant listener")

    @contextlib.asynccontextmanager
    async def change_seen_by(self, store):
        """Wait for the notification round trip of the change made inside the block."""
        before = store.changes_seen
        yield
        await wait_until(lambda: store.changes_seen > before, what="the change notification")

    async def cleanup(self):
        await drop_schema(self.schema)

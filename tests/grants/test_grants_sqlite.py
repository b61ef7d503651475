import logging
import sqlite3
import subprocess
import sys
import textwrap
import threading
from datetime import timedelta

import pytest
from grants_backends import SQLiteBackend
from grants_helpers import ALICE, T0, caller, request_for

from proxy.grants import GrantStoreUnavailable, SQLiteGrantStore
from proxy.grants.sqlite_schema import SCHEMA_VERSION

pytestmark = pytest.mark.asyncio


@pytest.fixture
def backend(tmp_path):
    """This module tests the SQLite file itself, so its stores are SQLite only."""
    return SQLiteBackend(tmp_path)


READER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    from proxy.grants import SQLiteGrantStore
    from proxy.identity import Caller, Subject

    async def main():
        store = SQLiteGrantStore(__import__("pathlib").Path(sys.argv[1]))
        who = Caller(Subject.parse(sys.argv[2]))
        now = datetime.fromisoformat(sys.argv[3])
        for line in sys.stdin:
            access = await store.access_for(who, now)
            print("allowed" if access.allows("pr-a", "ssn") else "denied", flush=True)
        await store.close()

    asyncio.run(main())
    """
)


class TestSQLiteFile:
    async def test_schema_wal_and_private_file(self, tmp_path):
        """A new database is created 0600, in WAL mode, at the current schema version."""
        store = SQLiteGrantStore(tmp_path / "g.db")
        await store.close()
        assert (tmp_path / "g.db").stat().st_mode & 0o777 == 0o600
        conn = sqlite3.connect(tmp_path / "g.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()

    async def test_foreign_database_refused(self, tmp_path):
        """An SQLite file belonging to something else is refused, not migrated."""
        conn = sqlite3.connect(tmp_path / "other.db")
        conn.execute("CREATE TABLE patients (name TEXT)")
        conn.commit()
        conn.close()
        with pytest.raises(GrantStoreUnavailable, match="not a phi-proxy grant database"):
            SQLiteGrantStore(tmp_path / "other.db")

    async def test_newer_schema_refused(self, tmp_path):
        """A database written by a newer phi-proxy is refused with an upgrade hint."""
        await SQLiteGrantStore(tmp_path / "g.db").close()
        conn = sqlite3.connect(tmp_path / "g.db")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        with pytest.raises(GrantStoreUnavailable, match="upgrade phi-proxy"):
            SQLiteGrantStore(tmp_path / "g.db")

    async def test_missing_folder_is_a_clear_error(self, tmp_path):
        """A store path in a missing folder fails with a message naming the fix."""
        with pytest.raises(GrantStoreUnavailable, match="folder exists"):
            SQLiteGrantStore(tmp_path / "nope" / "g.db")

    async def test_history_is_append_only(self, store):
        """Grants cannot be deleted, widened or un-revoked, even with direct SQL."""
        grant = await store.add(request_for(), now=T0)
        await store.revoke(grant_id=grant.id, by="c", reason="r", now=T0)
        conn = sqlite3.connect(store.path)
        for sql in (
            "DELETE FROM grants",
            "UPDATE grants SET revoked_at = NULL, revoked_by = NULL",
            "DELETE FROM grant_events",
        ):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(sql)
        events = conn.execute("SELECT action, by, reason FROM grant_events ORDER BY seq").fetchall()
        assert events == [("add", "sec-officer", "ticket-1"), ("revoke", "c", "r")]
        conn.close()

    async def test_expiry_cannot_be_extended_in_place(self, store):
        """An active grant's expiry cannot be pushed out by direct SQL."""
        await store.add(request_for(), now=T0)
        conn = sqlite3.connect(store.path)
        with pytest.raises(sqlite3.IntegrityError, match="cannot be widened or extended"):
            conn.execute("UPDATE grants SET expires_at = '2999-01-01T00:00:00.000000Z'")
        conn.close()


class TestRequestPath:
    async def test_cache_hit_costs_no_query(self, store):
        """With no change to the database, a repeated access_for runs no SQL on the worker."""
        await store.add(request_for(), now=T0)
        statements = []
        await store._run(lambda conn: conn.set_trace_callback(statements.append))
        await store.access_for(caller(ALICE), T0)
        assert len(statements) == 1
        for _ in range(10):
            assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        assert len(statements) == 1

    async def test_expiry_honoured_from_cache(self, store):
        """A cached grant stops allowing at expires_at without any database change."""
        await store.add(request_for(ttl=timedelta(minutes=5)), now=T0)
        assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        later = T0 + timedelta(minutes=5)
        assert not (await store.access_for(caller(ALICE), later)).allows("pr-a", "ssn")

    async def test_unreadable_store_fails_closed_and_logs_once_per_interval(
        self, open_store, caplog
    ):
        """When the grants table is gone, every caller gets no access; one log line per interval."""
        store = open_store(error_log_interval=60)
        await store.add(request_for(), now=T0)
        assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        conn = sqlite3.connect(store.path)
        conn.execute("DROP TABLE grant_events")
        conn.execute("DROP TABLE grants")
        conn.close()
        caplog.set_level(logging.ERROR, logger="proxy.grants.sqlite_store")
        for i in range(100):
            access = await store.access_for(caller(ALICE), T0 + timedelta(seconds=i % 50))
            assert access.practices == {}
        assert len(caplog.records) == 1
        assert "no access" in caplog.records[0].getMessage()
        await store.access_for(caller(ALICE), T0 + timedelta(seconds=61))
        assert len(caplog.records) == 2
        assert await store.ping() is False


class TestMultiProcess:
    async def test_running_second_process_sees_revocation_on_next_call(self, store):
        """A separate, already-running reader process denies on its next call after revoke."""
        grant = await store.add(request_for(), now=T0)
        # The reader is driven line by line from here; blocking briefly on its pipe is the point.
        with subprocess.Popen(  # noqa: ASYNC220
            [sys.executable, "-c", READER, str(store.path), str(ALICE), T0.isoformat()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        ) as reader:
            for _ in range(3):
                reader.stdin.write("check\n")
                reader.stdin.flush()
                assert reader.stdout.readline().strip() == "allowed"
            await store.revoke(grant_id=grant.id, by="ciso", reason="left", now=T0)
            reader.stdin.write("check\n")
            reader.stdin.flush()
            assert reader.stdout.readline().strip() == "denied"
            reader.stdin.close()
            assert reader.wait(timeout=30) == 0

    async def test_opening_a_new_file_waits_out_another_writers_lock(self, tmp_path):
        """Another process mid-write when the file is switched to WAL delays the open, no more.

        SQLite refuses that switch at once ("database is locked", no busy wait) while another
        connection holds the write lock; several processes creating the same new file hit it.
        """
        path = tmp_path / "new.db"
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.3, other.execute, ("COMMIT",))
        release.start()
        try:
            store = SQLiteGrantStore(path)
        finally:
            release.join()
            other.close()
        try:
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            await store.close()

    async def test_concurrent_writers_in_several_processes(self, tmp_path):
        """Four processes creating the database and adding grants at once lose nothing."""
        script = textwrap.dedent(
            """
            import asyncio, sys
            from datetime import UTC, datetime, timedelta
            from pathlib import Path
            from proxy.grants import GrantRequest, SQLiteGrantStore
            from proxy.identity import Subject

            async def main():
                store = SQLiteGrantStore(Path(sys.argv[1]))
                now = datetime.now(UTC)
                for i in range(25):
                    await store.add(GrantRequest(
                        subject=Subject("https://i.test", f"{sys.argv[2]}-{i}"), practice="p",
                        field_classes=None, expires_at=now + timedelta(days=1),
                        created_by="t", reason="load"), now=now)
                await store.close()

            asyncio.run(main())
            """
        )
        path = tmp_path / "shared.db"
        procs = [
            subprocess.Popen([sys.executable, "-c", script, str(path), f"w{n}"])  # noqa: ASYNC220
            for n in range(4)
        ]
        assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
        store = SQLiteGrantStore(path)
        try:
            assert len(await store.list()) == 100
        finally:
            await store.close()

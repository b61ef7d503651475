"""The SQLite store follows its file: replaced on disk → reopened; gone → no access.

Found in the docs audit: the proxy kept answering from an unlinked grant database, so a backup
restored over it (and a revocation made in the restored file) went unseen, and a deleted
database left /readyz green. Real SQLite files, two store objects as proxy and phi-grants.
"""

import asyncio
import logging
import shutil
import sqlite3
import threading
from datetime import timedelta

import pytest
from grants_helpers import ALICE, BOB, T0, caller, request_for

from proxy.grants import SQLiteGrantStore

pytestmark = pytest.mark.asyncio
LATER = T0 + timedelta(minutes=1)


@pytest.fixture
async def stores(tmp_path):
    """(proxy's store, admin's store) on one file; alice holds a grant at pr-a."""
    path = tmp_path / "grants.sqlite3"
    proxy, admin = SQLiteGrantStore(path), SQLiteGrantStore(path)
    await admin.add(request_for(ALICE, "pr-a"), now=T0)
    yield path, proxy, admin
    await proxy.close()
    await admin.close()


async def test_a_file_restored_over_the_database_is_read_on_the_next_request(tmp_path, stores):
    path, proxy, _admin = stores
    assert (await proxy.access_for(caller(ALICE), LATER)).allows("pr-a", "ssn")
    restored = tmp_path / "restored.sqlite3"
    with sqlite3.connect(path) as live, sqlite3.connect(restored) as copy:
        live.backup(copy)  # a backup in which alice still holds her grant
    restored.chmod(0o600)
    store = SQLiteGrantStore(restored)
    await store.offboard(ALICE, by="sec", reason="left", now=LATER)  # revoked in that file
    await store.close()
    with sqlite3.connect(path) as live:  # the restore procedure: no WAL left behind
        live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    restored.replace(path)  # restored: a new file at the same path
    assert not (await proxy.access_for(caller(ALICE), LATER)).allows("pr-a", "ssn")
    assert await proxy.ping()


async def test_a_deleted_database_means_no_access_and_not_ready(stores, caplog):
    path, proxy, _admin = stores
    assert (await proxy.access_for(caller(ALICE), LATER)).allows("pr-a", "ssn")
    path.unlink()
    with caplog.at_level(logging.ERROR):
        assert not (await proxy.access_for(caller(ALICE), LATER)).allows("pr-a", "ssn")
    assert not await proxy.ping()
    assert "the grant database file is gone" in caplog.text


async def test_a_replacement_others_may_write_is_refused(tmp_path, stores):
    path, proxy, _admin = stores
    copy = tmp_path / "copy.sqlite3"
    shutil.copyfile(path, copy)
    copy.chmod(0o666)
    copy.replace(path)
    assert not (await proxy.access_for(caller(ALICE), LATER)).allows("pr-a", "ssn")
    assert not await proxy.ping()


async def test_a_lookup_in_flight_across_a_restore_does_not_fill_the_cache(tmp_path):
    """A lookup that started on the old file must not cache its grants.

    The worker thread is held by a blocker only to fix the interleaving that a slow disk or
    a busy thread produces on its own (the store has one worker thread).
    """
    path = tmp_path / "grants.sqlite3"
    admin = SQLiteGrantStore(path)
    await admin.add(request_for(ALICE, "pr-a"), now=T0)
    await admin.add(request_for(BOB, "pr-a"), now=T0)
    await admin.close()
    with sqlite3.connect(path) as live:
        live.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    proxy = SQLiteGrantStore(path)
    try:
        assert (await proxy.access_for(caller(BOB), LATER)).allows("pr-a", "ssn")
        restored = tmp_path / "restored.sqlite3"
        with sqlite3.connect(path) as live, sqlite3.connect(restored) as copy:
            live.backup(copy)
        restored.chmod(0o600)
        store = SQLiteGrantStore(restored)
        await store.offboard(ALICE, by="sec", reason="left", now=LATER)
        await store.close()
        gate = threading.Event()
        proxy._executor.submit(gate.wait)
        in_flight = asyncio.create_task(proxy.access_for(caller(ALICE), LATER))
        await asyncio.sleep(0.05)
        restored.replace(path)
        after = asyncio.create_task(proxy.access_for(caller(BOB), LATER))
        await asyncio.sleep(0.05)
        gate.set()
        await in_flight  # began before the restore: may still answer from the old file
        await after
        for _ in range(3):
            assert not (await proxy.access_for(caller(ALICE), LATER)).allows("pr-a", "ssn")
    finally:
        await proxy.close()

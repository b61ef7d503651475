"""A second, raw connection to the grant file cannot overwrite grants or their history.

The attacker here can open the SQLite file and run any DML, but does not drop triggers or edit
the schema (nothing in SQLite stops that; the file's 0600 mode does). REPLACE's implicit delete
fires no DELETE trigger and an INSERT fires no UPDATE trigger, so schema version 2 refuses every
INSERT that lands on an existing row, by id, seq or rowid.
"""

import sqlite3
from datetime import timedelta

import pytest
from grants_helpers import ALICE, T0, caller, request_for

from proxy.grants import SQLiteGrantStore
from proxy.grants.sqlite_queries import insert_grant, revoke_ids
from proxy.grants.sqlite_schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

LATER = T0 + timedelta(days=1)
ALL_GRANT_COLUMNS = (
    "id, issuer, sub, practice, field_classes, not_before, expires_at, created_at, "
    "created_by, reason, revoked_at, revoked_by, revoke_reason"
)
# Un-revoke and widen (every field class, until 2099) the grant with id :id.
_WIDENED = (
    "SELECT {id}, issuer, sub, practice, NULL, not_before, '2099-01-01T00:00:00.000000Z', "
    "created_at, created_by, reason FROM grants WHERE id = :id"
)
_FRESH = _WIDENED.format(id="'fresh-id'").removeprefix("SELECT ")
_COLS = (
    "(id, issuer, sub, practice, field_classes, not_before, expires_at, created_at, "
    "created_by, reason)"
)
GRANT_ATTACKS = {
    "insert-or-replace": f"INSERT OR REPLACE INTO grants {_COLS} {_WIDENED.format(id='id')}",
    "replace-into": f"REPLACE INTO grants {_COLS} {_WIDENED.format(id='id')}",
    "insert-or-ignore": f"INSERT OR IGNORE INTO grants {_COLS} {_WIDENED.format(id='id')}",
    "upsert-unrevoke": (
        f"INSERT INTO grants {_COLS} {_WIDENED.format(id='id')} "
        "ON CONFLICT (id) DO UPDATE SET revoked_at = NULL, revoked_by = NULL, "
        "field_classes = NULL, expires_at = excluded.expires_at"
    ),
    "upsert-do-nothing": (
        f"INSERT INTO grants {_COLS} {_WIDENED.format(id='id')} ON CONFLICT DO NOTHING"
    ),
    # A new id, but the revoked grant's rowid: REPLACE would drop the revoked row.
    "replace-by-rowid": (
        f"INSERT OR REPLACE INTO grants (rowid, {_COLS[1:-1]}) SELECT rowid, " + _FRESH
    ),
    "replace-by-negative-rowid": (
        f"INSERT INTO grants (rowid, {_COLS[1:-1]}) SELECT -1, " + _FRESH
    ),
    # An unrevoked grant moved onto the revoked grant's rowid, replacing it.
    "update-or-replace-rowid": (
        "UPDATE OR REPLACE grants SET rowid = (SELECT rowid FROM grants WHERE id = :id) "
        "WHERE id = :other"
    ),
    "delete": "DELETE FROM grants WHERE id = :id",
    "update-unrevoke": "UPDATE grants SET revoked_at = NULL, revoked_by = NULL WHERE id = :id",
}
_EVENT = (
    "SELECT {seq}, grant_id, 'add', at, 'sec-officer', 'renewed' FROM grant_events WHERE seq = :seq"
)
EVENT_ATTACKS = {
    "replace-into": "REPLACE INTO grant_events (seq, grant_id, action, at, by, reason) "
    + _EVENT.format(seq="seq"),
    "insert-or-replace": "INSERT OR REPLACE INTO grant_events "
    "(seq, grant_id, action, at, by, reason) " + _EVENT.format(seq="seq"),
    "insert-or-replace-rowid": "INSERT OR REPLACE INTO grant_events "
    "(rowid, grant_id, action, at, by, reason) " + _EVENT.format(seq="seq"),
    "insert-or-ignore": "INSERT OR IGNORE INTO grant_events "
    "(seq, grant_id, action, at, by, reason) " + _EVENT.format(seq="seq"),
    "upsert": "INSERT INTO grant_events (seq, grant_id, action, at, by, reason) "
    + _EVENT.format(seq="seq")
    + " AND true ON CONFLICT (seq) DO UPDATE SET action = 'add', reason = 'renewed'",
    "negative-seq": "INSERT INTO grant_events (seq, grant_id, action, at, by, reason) "
    + _EVENT.format(seq="-1"),
    "zero-seq": "INSERT INTO grant_events (seq, grant_id, action, at, by, reason) "
    + _EVENT.format(seq="0"),
    "update": "UPDATE grant_events SET action = 'add' WHERE seq = :seq",
    "delete": "DELETE FROM grant_events WHERE seq = :seq",
}


def attacker(path, *, foreign_keys=False, recursive_triggers=False):
    """A raw connection to the grant file, as a local user with write access would open it."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
    conn.execute(f"PRAGMA recursive_triggers = {'ON' if recursive_triggers else 'OFF'}")
    return conn


def snapshot(path):
    """Every grant and event row, rowids included."""
    conn = sqlite3.connect(path)
    try:
        grants = conn.execute(
            f"SELECT rowid, {ALL_GRANT_COLUMNS} FROM grants ORDER BY rowid"  # noqa: S608
        ).fetchall()
        events = conn.execute("SELECT rowid, * FROM grant_events ORDER BY seq").fetchall()
    finally:
        conn.close()
    return grants, events


async def revoked_setup(store):
    """A revoked ssn grant for ALICE (the target) and an unrevoked one for another practice."""
    revoked = await store.add(request_for(fields={"ssn"}), now=T0)
    await store.revoke(grant_id=revoked.id, by="sec-officer", reason="left", now=T0)
    other = await store.add(request_for(practice="pr-b", fields={"ssn"}), now=T0)
    return revoked, other


async def assert_still_revoked(store, revoked):
    """The store denies the revoked grant and reports it exactly as it was."""
    access = await store.access_for(caller(ALICE), LATER)
    assert not access.allows("pr-a", "ssn")
    assert not access.allows("pr-a", "history")
    [stored] = [g for g in await store.list(subject=ALICE) if g.id == revoked.id]
    assert stored.revoked_at is not None
    assert stored.field_classes == frozenset({"ssn"})
    assert stored.expires_at == revoked.expires_at


@pytest.fixture
async def target(tmp_path):
    store = SQLiteGrantStore(tmp_path / "grants.sqlite3")
    revoked, other = await revoked_setup(store)
    yield store, revoked, other
    await store.close()


def _params(path, revoked, other):
    conn = sqlite3.connect(path)
    try:
        seq = conn.execute(
            "SELECT seq FROM grant_events WHERE grant_id = ? AND action = 'revoke'", (revoked.id,)
        ).fetchone()[0]
    finally:
        conn.close()
    return {"id": revoked.id, "other": other.id, "seq": seq}


def _refused(path, sql, params, **pragmas):
    conn = attacker(path, **pragmas)
    try:
        with pytest.raises(sqlite3.DatabaseError) as refusal:
            conn.execute(sql, params)
    finally:
        conn.close()
    return str(refusal.value)


PRAGMAS = [
    pytest.param({}, id="defaults"),
    pytest.param({"foreign_keys": True, "recursive_triggers": True}, id="fk-recursive"),
]


class TestTamperRefused:
    @pytest.mark.parametrize("pragmas", PRAGMAS)
    @pytest.mark.parametrize("sql", GRANT_ATTACKS.values(), ids=GRANT_ATTACKS.keys())
    async def test_grant_overwrite_refused(self, target, sql, pragmas):
        """Every way of landing on an existing grant row is refused; the grant stays revoked."""
        store, revoked, other = target
        before = snapshot(store.path)
        params = _params(store.path, revoked, other)
        message = _refused(store.path, sql, params, **pragmas)
        assert "grant" in message
        assert snapshot(store.path) == before
        await assert_still_revoked(store, revoked)

    @pytest.mark.parametrize("pragmas", PRAGMAS)
    @pytest.mark.parametrize("sql", EVENT_ATTACKS.values(), ids=EVENT_ATTACKS.keys())
    async def test_history_overwrite_refused(self, target, sql, pragmas):
        """Every way of rewriting an event is refused; the revoke event is still there."""
        store, revoked, other = target
        before = snapshot(store.path)
        params = _params(store.path, revoked, other)
        message = _refused(store.path, sql, params, **pragmas)
        assert "history is append-only" in message
        assert snapshot(store.path) == before
        events = before[1]
        assert [(e[2], e[3], e[6]) for e in events] == [
            (revoked.id, "add", "ticket-1"),
            (revoked.id, "revoke", "left"),
            (other.id, "add", "ticket-1"),
        ]
        await assert_still_revoked(store, revoked)

    async def test_plain_duplicate_insert_refused_with_clear_message(self, target):
        store, revoked, other = target
        sql = f"INSERT INTO grants {_COLS} {_WIDENED.format(id='id')}"
        message = _refused(store.path, sql, _params(store.path, revoked, other))
        assert message == "a grant cannot be replaced or overwritten; revoke it and add a new one"

    async def test_normal_operation_after_attempts(self, target):
        """Refused attempts leave the store fully usable: add, revoke, offboard, list, read."""
        store, revoked, other = target
        params = _params(store.path, revoked, other)
        for sql in GRANT_ATTACKS.values():
            _refused(store.path, sql, params)
        assert (await store.access_for(caller(ALICE), LATER)).allows("pr-b", "ssn")
        fresh = await store.add(request_for(fields={"history"}, start=LATER), now=LATER)
        assert (await store.access_for(caller(ALICE), LATER)).allows("pr-a", "history")
        await store.revoke(grant_id=fresh.id, by="sec-officer", reason="done", now=LATER)
        assert not (await store.access_for(caller(ALICE), LATER)).allows("pr-a", "history")
        offboarded = await store.offboard(ALICE, by="sec-officer", reason="left", now=LATER)
        assert [g.id for g in offboarded] == [other.id]
        assert not (await store.access_for(caller(ALICE), LATER)).allows("pr-b", "ssn")
        grants, events = snapshot(store.path)
        assert len(grants) == 3
        assert [e[0] for e in events] == list(range(1, 7))


def build_v1(path):
    """A grant database exactly as schema version 1 left it, with a revoked and a live grant."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN IMMEDIATE")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
    conn.execute("PRAGMA user_version = 1")
    revoked = request_for(fields={"ssn"}).build("grant-revoked", now=T0, max_ttl=timedelta(days=90))
    other = request_for(practice="pr-b").build("grant-live", now=T0, max_ttl=timedelta(days=90))
    insert_grant(conn, revoked)
    revoke_ids(conn, [revoked.id], "sec-officer", "left", T0)
    insert_grant(conn, other)
    conn.execute("COMMIT")
    conn.close()
    return revoked, other


class TestUpgrade:
    def test_schema_version_is_3(self):
        assert SCHEMA_VERSION == 3
        assert len(MIGRATIONS) == 3

    async def test_version_1_is_vulnerable_then_upgraded_and_protected(self, tmp_path):
        """A version 1 file is upgraded on open, keeps its rows, and then refuses REPLACE."""
        path = tmp_path / "grants.sqlite3"
        revoked, other = build_v1(path)
        params = _params(path, revoked, other)
        conn = attacker(path)
        # Version 1 on its own: an UPSERT's DO UPDATE fires the UPDATE triggers ...
        with pytest.raises(sqlite3.IntegrityError, match="a revoked grant cannot be changed"):
            conn.execute(
                f"INSERT INTO grants {_COLS} {_WIDENED.format(id='id')} "
                "ON CONFLICT (id) DO UPDATE SET revoked_at = NULL, revoked_by = NULL",
                params,
            )
        # ... but INSERT OR REPLACE gets past every trigger (rolled back here).
        conn.execute("BEGIN")
        conn.execute(GRANT_ATTACKS["insert-or-replace"], params)
        assert conn.execute(
            "SELECT revoked_at FROM grants WHERE id = ?", (revoked.id,)
        ).fetchone() == (None,)
        conn.execute("ROLLBACK")
        conn.close()
        before = snapshot(path)

        store = SQLiteGrantStore(path)
        try:
            conn = sqlite3.connect(path)
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            triggers = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")
            }
            conn.close()
            assert {"grants_no_overwrite", "grant_events_no_overwrite"} <= triggers
            assert snapshot(path) == before
            for sql in GRANT_ATTACKS.values():
                _refused(path, sql, params)
            for sql in EVENT_ATTACKS.values():
                _refused(path, sql, params)
            assert snapshot(path) == before
            await assert_still_revoked(store, revoked)
            assert (await store.access_for(caller(ALICE), LATER)).allows("pr-b", "ssn")
            added = await store.add(request_for(practice="pr-c", start=LATER), now=LATER)
            assert [g.id for g in await store.list(practice="pr-c")] == [added.id]
        finally:
            await store.close()

    async def test_reopening_a_current_database_migrates_nothing(self, tmp_path):
        path = tmp_path / "grants.sqlite3"
        store = SQLiteGrantStore(path)
        revoked, _other = await revoked_setup(store)
        await store.close()
        before = snapshot(path)
        store = SQLiteGrantStore(path)
        try:
            assert snapshot(path) == before
            await assert_still_revoked(store, revoked)
        finally:
            await store.close()

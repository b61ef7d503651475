"""What only the PostgreSQL store has.

Migrations under a lock, triggers, the revocation push, a cache trusted only while LISTENing,
and failing closed within the timeout.
"""

import asyncio
import logging
import time
from datetime import timedelta

import asyncpg
import pytest
from grants_forwarder import Forwarder
from grants_helpers import ALICE, BOB, T0, caller, request_for
from grants_pg import DSN, drop_schema, new_schema, require_postgres, wait_until

from proxy.grants import GrantSettings, GrantStoreUnavailable, open_grant_store
from proxy.grants.postgres_schema import SCHEMA_VERSION, subject_digest
from proxy.grants.postgres_store import PostgresGrantStore

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres]


@pytest.fixture
async def schema():
    """A fresh schema name, dropped after the test."""
    await require_postgres()
    name = new_schema()
    yield name
    await drop_schema(name)


@pytest.fixture
async def stores(schema):
    """Open PostgreSQL stores on the test schema (DSN overridable); all closed afterwards."""
    opened = []

    def make(dsn=DSN, **options):
        options.setdefault("timeout", 5.0)
        store = PostgresGrantStore(dsn, schema=schema, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def sql(schema):
    """A plain connection with the test schema on its search_path (a DBA in psql)."""
    conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    yield conn
    await conn.close()


@pytest.fixture
async def forwarder():
    """A TCP forwarder to the test PostgreSQL; stopped afterwards."""
    await require_postgres()
    fwd = Forwarder()
    await fwd.start()
    yield fwd
    await fwd.stop()


async def listening(store):
    await store.ping()
    await wait_until(lambda: store.listener.listening, what="the grant listener")


class TestPostgresSchema:
    async def test_replicas_starting_at_once_migrate_once(self, stores, sql):
        """Eight stores opening a new schema together all succeed; the schema is migrated once."""
        many = [stores() for _ in range(8)]
        assert await asyncio.gather(*(s.ping() for s in many)) == [True] * 8
        assert await sql.fetchval("SELECT version FROM phi_grants_schema") == SCHEMA_VERSION
        assert await sql.fetchval("SELECT count(*) FROM phi_grants_schema") == 1

    @pytest.mark.parametrize(
        ("statement", "message"),
        [
            ("DELETE FROM grants", "never deleted"),
            ("TRUNCATE grants CASCADE", "never deleted"),
            ("UPDATE grants SET revoked_at = NULL, revoked_by = NULL", "cannot be changed"),
            ("DELETE FROM grant_events", "append-only"),
            ("UPDATE grant_events SET reason = 'x'", "append-only"),
            ("TRUNCATE grant_events", "append-only"),
        ],
    )
    async def test_history_is_append_only(self, stores, sql, statement, message):
        """Direct SQL cannot delete grants, un-revoke them or rewrite history."""
        store = stores()
        grant = await store.add(request_for(), now=T0)
        await store.revoke(grant_id=grant.id, by="c", reason="r", now=T0)
        with pytest.raises(asyncpg.PostgresError, match=message):
            await sql.execute(statement)

    @pytest.mark.parametrize(
        "change",
        ["expires_at = expires_at + interval '1 day'", "practice = 'pr-z'", "field_classes = NULL"],
    )
    async def test_scope_cannot_be_changed_in_place(self, stores, sql, change):
        """A live grant cannot be extended, moved or widened by direct SQL."""
        store = stores()
        await store.add(request_for(fields={"ssn"}), now=T0)
        with pytest.raises(asyncpg.PostgresError, match="widened or extended"):
            await sql.execute(f"UPDATE grants SET {change}")  # noqa: S608 - constant cases

    async def test_foreign_tables_refused(self, stores, sql, schema):
        """A schema with a `grants` table phi-proxy did not create is refused, not adopted."""
        await sql.execute(f'CREATE SCHEMA "{schema}"')
        await sql.execute(f'CREATE TABLE "{schema}".grants (id int)')
        store = stores()
        with pytest.raises(GrantStoreUnavailable, match="did not create"):
            await store.list()
        assert not (await store.access_for(caller(ALICE), T0)).practices

    async def test_newer_schema_refused(self, stores, sql):
        """A schema migrated by a newer phi-proxy is refused with an upgrade hint."""
        assert await stores().ping()
        await sql.execute("UPDATE phi_grants_schema SET version = 99")
        with pytest.raises(GrantStoreUnavailable, match="upgrade phi-proxy"):
            await stores().list()


class TestRevocationPush:
    async def test_revocation_by_direct_sql_is_pushed(self, stores, sql):
        """A DBA revoking with plain SQL still notifies every replica (the trigger does it)."""
        reader = stores()
        grant = await stores().add(request_for(), now=T0)
        await listening(reader)
        assert (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        before = reader.changes_seen
        await sql.execute(
            "UPDATE grants SET revoked_at = now(), revoked_by = 'dba' WHERE id = $1", grant.id
        )
        await wait_until(lambda: reader.changes_seen > before, what="the notification")
        assert not (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")

    async def test_notification_drops_only_that_subject(self, stores):
        """A change for Bob leaves Alice's cached grants in place."""
        reader, writer = stores(), stores()
        await writer.add(request_for(subject=ALICE), now=T0)
        await listening(reader)
        await reader.access_for(caller(ALICE), T0)
        before = reader.changes_seen
        await writer.add(request_for(subject=BOB), now=T0)
        await wait_until(lambda: reader.changes_seen > before, what="the notification")
        assert subject_digest(ALICE) in reader._cache

    async def test_other_schema_ignored_unknown_payload_forgets_all(self, stores, sql):
        """Notifications of another schema change nothing; an unknown payload empties the cache."""
        reader = stores()
        await stores().add(request_for(), now=T0)
        await listening(reader)
        await reader.access_for(caller(ALICE), T0)
        await sql.execute(f"NOTIFY phi_grants, 'other_schema:{subject_digest(ALICE)}'")
        await sql.execute("NOTIFY phi_grants, 'garbage'")
        await wait_until(lambda: reader.changes_seen >= 1, what="the garbage notification")
        assert reader._cache == {}

    async def test_cache_is_used_only_while_listening(self, stores, sql):
        """Killing the LISTEN connection empties the cache and stops filling it until re-LISTEN."""
        reader = stores(listen_check_interval=60)
        await stores().add(request_for(), now=T0)
        await listening(reader)
        await reader.access_for(caller(ALICE), T0)
        assert subject_digest(ALICE) in reader._cache
        pid = reader.listener.backend_pid
        await sql.execute("SELECT pg_terminate_backend($1)", pid)
        await wait_until(lambda: not reader.listener.listening, what="the listener to notice")
        assert reader._cache == {}
        await wait_until(lambda: reader.listener.listening, what="the listener to reconnect")
        assert reader.listener.backend_pid != pid

    async def test_a_listener_that_stops_receiving_notifications_is_not_trusted(self, stores):
        """Queries answer but notifications no longer arrive: the self-ping notices.

        As behind a transaction pooler (LISTEN lost): the cache is dropped, LISTEN is redone.
        """
        reader = stores(listen_check_interval=0.2, timeout=0.5)
        await stores().add(request_for(), now=T0)
        await listening(reader)
        await reader.access_for(caller(ALICE), T0)
        assert subject_digest(ALICE) in reader._cache
        pid = reader.listener.backend_pid
        await reader.listener._conn.execute("UNLISTEN *")  # the session stays healthy otherwise
        await wait_until(lambda: not reader.listener.listening, what="the self-ping to fail")
        assert reader._cache == {}
        await wait_until(lambda: reader.listener.listening, what="the listener to reconnect")
        assert reader.listener.backend_pid != pid

    async def test_other_replicas_pings_do_not_empty_the_cache(self, stores):
        """Every listener pings on the shared channel; the others' pings are not "forget all"."""
        reader = stores(listen_check_interval=60)
        pinger = stores(listen_check_interval=0.05)
        await stores().add(request_for(), now=T0)
        await listening(reader)
        await listening(pinger)
        await reader.access_for(caller(ALICE), T0)
        await asyncio.sleep(0.5)  # ~10 pings from the other store
        assert subject_digest(ALICE) in reader._cache

    async def test_revoke_while_listener_is_down_is_honoured(self, stores, sql):
        """A revocation made while the listener is reconnecting is refused on the next call."""
        reader, writer = stores(listen_check_interval=60), stores()
        grant = await writer.add(request_for(), now=T0)
        await listening(reader)
        for _ in range(3):
            assert (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        await sql.execute("SELECT pg_terminate_backend($1)", reader.listener.backend_pid)
        await wait_until(lambda: not reader.listener.listening, what="the listener to notice")
        await writer.revoke(grant_id=grant.id, by="ciso", reason="left", now=T0)
        assert not (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        await wait_until(lambda: reader.listener.listening, what="the listener to reconnect")
        assert not (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")


class TestFailClosed:
    async def test_database_down_masks_then_recovers(self, stores, forwarder, caplog):
        """Database unreachable: no access, not ready, one log line; back: access returns.

        Once the listener has noticed the outage, even a warm cache is not used.
        """
        store = stores(forwarder.dsn(), timeout=1.0, error_log_interval=60)
        await store.add(request_for(), now=T0)
        await listening(store)
        assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        caplog.set_level(logging.ERROR, logger="proxy.grants.postgres_store")
        await forwarder.stop()
        await wait_until(lambda: not store.listener.listening, what="the listener to notice")
        for _ in range(3):
            assert not (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        assert await store.ping() is False
        read_errors = [r for r in caplog.records if "cannot be read" in r.getMessage()]
        assert len(read_errors) == 1
        await forwarder.start()

        async def recovered():
            return (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")

        deadline = time.monotonic() + 10
        while not await recovered():
            assert time.monotonic() < deadline, "the store did not recover"
            await asyncio.sleep(0.05)
        assert await store.ping() is True

    async def test_hung_database_answers_within_the_timeout(self, stores, forwarder):
        """A database that stops answering costs a request at most the store timeout."""
        store = stores(forwarder.dsn(), timeout=0.5)
        await stores().add(request_for(), now=T0)  # set-up, directly: no 0.5 s limit on a busy host
        deadline = time.monotonic() + 30
        while not await store.ping():  # connected through the forwarder while it still forwards
            assert time.monotonic() < deadline, "the store never reached the database"
        forwarder.blackhole()
        started = time.monotonic()
        access = await store.access_for(caller(BOB), T0)
        assert access.practices == {}
        assert await store.ping() is False
        with pytest.raises(GrantStoreUnavailable, match=r"did not answer within 0\.5 s"):
            await store.add(request_for(subject=BOB), now=T0)
        # Three calls, each cut at the timeout (a hung call would take minutes); the slack is
        # for a host busy with other tests.
        assert time.monotonic() - started < 3 * 0.5 + 1.5

    async def test_starts_while_database_is_down(self, stores, forwarder):
        """A store created while the database is down answers 'no access', then recovers."""
        await forwarder.stop()
        # Refused connections fail at once; the timeout only bounds the first real connection
        # and schema set-up after the restart, which a busy host can take a while to finish.
        store = stores(forwarder.dsn(), timeout=10)
        assert (await store.access_for(caller(ALICE), T0)).practices == {}
        assert await store.ping() is False
        await forwarder.start()
        await store.add(request_for(), now=T0)
        assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")

    async def test_repr_and_errors_name_no_credentials(self, schema, caplog):
        """The store's repr and failure log name host, port and database, never user/password."""
        store = PostgresGrantStore(
            "postgresql://secret-user:hunter2@127.0.0.1:1/test", schema=schema, timeout=0.5
        )
        try:
            assert (await store.access_for(caller(ALICE), T0)).practices == {}
            text = repr(store) + "\n".join(r.getMessage() for r in caplog.records)
            assert "127.0.0.1:1/test" in text
            assert "hunter2" not in text
            assert "secret-user" not in text
        finally:
            await store.close()


class TestOpenGrantStore:
    async def test_postgres_url_opens_the_postgres_store_without_io(self):
        """open_grant_store picks the PostgreSQL store for a URL and does not connect yet."""
        settings = GrantSettings(
            store="postgresql://nobody@db.invalid/grants",
            pg_schema="phi_fleet",
            timeout_seconds=1.5,
            max_ttl="30d",
        )
        store = open_grant_store(settings)
        assert isinstance(store, PostgresGrantStore)
        assert store.schema == "phi_fleet"
        assert store.max_ttl == timedelta(days=30)
        await store.close()

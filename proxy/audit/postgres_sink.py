"""The fleet audit sink: one hash chain in PostgreSQL, shared by every replica and CLI.

One chain for the whole fleet, not one per replica: an investigator verifies one trail and gets
one report, and a deleted event shows as a gap in one sequence, whichever replica wrote it. Each
batch is sealed and written in one transaction that holds the row lock on `audit_head`, so
replicas append one after another (a batch every `audit.flush_interval` per replica: the lock
is held for one round trip of INSERTs, far below what would make replicas queue).

Tables (schema `pg_schema`, created and migrated here under an advisory lock):
- `audit_events (seq, line, written_at)`: each sealed line exactly as `FileSink` would write it;
  triggers refuse UPDATE, DELETE and TRUNCATE. In the documented setup (docs/fleet.md) the
  proxy's role has only INSERT and SELECT on it, so even the proxy cannot rewrite history.
- `audit_head (seq, hash)`: the chain's end, the row every append locks; `seq` may only grow.

`AuditSink` is synchronous (the trail calls it from a worker thread; CLIs call it directly), and
asyncpg is asynchronous, so this sink runs its own private event loop, one call at a time (on
a helper thread when the caller is itself inside a running loop, as `phi-grants` is).
Every failure is raised as OSError, which is what the trail's failure policy expects.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, BinaryIO, Final

import asyncpg

from proxy.audit.chain import GENESIS_PREV, Head
from proxy.grants.postgres_bounded import within
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from asyncpg import Connection

    from proxy.audit.chain import Chain

__all__ = ["AuditStoreUnavailable", "PostgresSink", "export_trail"]

#: Rows per round trip when a trail is exported (memory: one batch of lines).
_EXPORT_BATCH: Final = 5000

#: pg_advisory_xact_lock key serialising audit migrations ("PHIAUDIT").
_LOCK_KEY = 0x5048_4941_5544_4954
_VERSION_TABLE = "phi_audit_schema"
_V1 = (
    """CREATE TABLE audit_events (
        seq        bigint PRIMARY KEY CHECK (seq > 0),
        line       text NOT NULL,
        written_at timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE TABLE audit_head (
        single boolean PRIMARY KEY DEFAULT true CHECK (single),
        seq    bigint NOT NULL,
        hash   text NOT NULL
    )""",
    f"INSERT INTO audit_head (seq, hash) VALUES (0, '{GENESIS_PREV}')",  # noqa: S608 - constant
    """CREATE FUNCTION audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
        END $$""",
    """CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_refuse('the audit trail is append-only')""",
    """CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
        FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse('the audit trail is append-only')""",
    """CREATE TRIGGER audit_head_forward_only BEFORE UPDATE ON audit_head FOR EACH ROW
        WHEN (NEW.seq <= OLD.seq)
        EXECUTE FUNCTION audit_refuse('the audit chain head only moves forward')""",
    """CREATE TRIGGER audit_head_kept BEFORE DELETE ON audit_head FOR EACH ROW
        EXECUTE FUNCTION audit_refuse('the audit chain head is never deleted')""",
    """CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head FOR EACH STATEMENT
        EXECUTE FUNCTION audit_refuse('the audit chain head is never deleted')""",
)
_MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)


class AuditStoreUnavailable(OSError):
    """The audit database cannot be reached or refused the write."""


class PostgresSink:
    """Appends sealed events to one chain in PostgreSQL; safe for many processes at once."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "phi_audit",
        timeout: float = 5.0,
        application_name: str = "phi-proxy",
        create: bool = True,
    ) -> None:
        """Remember the database; connect on first use. `schema` must be a plain identifier.

        `create=False` (readers such as `phi-audit`): never create or migrate the schema; a
        schema that holds no audit trail is an error, so a mistyped name is not an empty trail.
        """
        self._dsn = dsn
        self.schema = schema
        self._timeout = timeout
        self._create = create
        self._settings = {
            "application_name": f"{application_name}-audit:{os.getpid()}",
            "search_path": schema,
        }
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"PostgresSink({self.describe()!r})"

    def describe(self) -> str:
        """Host, port, database and schema; never the user or a password."""
        return f"{describe_postgres_url(self._dsn)} (schema {self.schema})"

    def advice(self) -> str:
        """Where a PostgreSQL sink usually fails."""
        return (
            "check that PostgreSQL answers at that address, that audit.postgres_url's user can "
            "log in (its password source is set) and may insert into the schema's audit tables "
            "(docs/fleet.md names the grants); `phi-audit verify` shows what the trail holds"
        )

    # ---- running asyncpg from synchronous callers -------------------------------------------

    def _call(
        self,
        fn: Callable[[Connection], Awaitable[Any]],
        *,
        bounded: bool = True,
    ) -> Any:  # noqa: ANN401
        """Run `fn` on the sink's connection; `bounded=False`: `fn` bounds its own round trips."""
        return _off_running_loop(lambda: self._call_here(fn, bounded=bounded))

    def _call_here(
        self,
        fn: Callable[[Connection], Awaitable[Any]],
        *,
        bounded: bool,
    ) -> Any:  # noqa: ANN401
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
            try:
                return self._loop.run_until_complete(self._with_conn(fn, bounded=bounded))
            except AuditStoreUnavailable:
                self._drop_connection()
                raise
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                self._drop_connection()
                raise AuditStoreUnavailable(
                    f"audit database {self.describe()}: {exc.__class__.__name__}: "
                    f"{exc or 'no answer'}"
                ) from None

    async def _with_conn(
        self,
        fn: Callable[[Connection], Awaitable[Any]],
        *,
        bounded: bool,
    ) -> Any:  # noqa: ANN401
        if not bounded:
            return await fn(await within(self._timeout, self._connected()))
        return await within(self._timeout, self._connected_then(fn))

    async def _connected_then(self, fn: Callable[[Connection], Awaitable[Any]]) -> Any:  # noqa: ANN401
        return await fn(await self._connected())

    async def _connected(self) -> Connection:
        """The open connection, made (and its schema checked or migrated) when there is none."""
        if self._conn is None or self._conn.is_closed():
            conn: Connection = await asyncpg.connect(
                self._dsn, timeout=self._timeout, server_settings=self._settings
            )
            try:
                if self._create:
                    await _migrate(conn, self.schema)
                else:
                    await _require_trail(conn, self.schema, self.describe())
            except BaseException:
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    def close(self) -> None:
        """Close the connection and the private event loop."""
        _off_running_loop(self._close_here)

    def _close_here(self) -> None:
        with self._lock:
            loop, conn, self._loop, self._conn = self._loop, self._conn, None, None
            if loop is None:
                return
            if conn is not None:
                try:
                    loop.run_until_complete(within(self._timeout, conn.close()))
                except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    conn.terminate()
            loop.run_until_complete(asyncio.sleep(0))  # let the transport finish closing
            loop.close()

    # ---- the AuditSink protocol -------------------------------------------------------------

    def append(
        self, chain: Chain, payloads: list[dict[str, Any]], *, ts: str, force_checkpoint: bool
    ) -> bool:
        """Seal `payloads` after the fleet's head and insert them, in one locked transaction."""

        async def run(conn: Connection) -> bool:
            async with conn.transaction():
                row = await conn.fetchrow("SELECT seq, hash FROM audit_head FOR UPDATE")
                head = Head(int(row["seq"]), str(row["hash"]))
                batch = list(payloads)
                if head.seq == 0:
                    batch.insert(0, self._genesis(ts))
                lines, new_head, checkpointed = chain.seal_all(
                    batch, head, ts=ts, force_checkpoint=force_checkpoint
                )
                await conn.executemany(
                    "INSERT INTO audit_events (seq, line) VALUES ($1, $2)",
                    [(head.seq + i, line.decode()) for i, line in enumerate(lines, 1)],
                )
                await conn.execute(
                    "UPDATE audit_head SET seq = $1, hash = $2", new_head.seq, new_head.hash
                )
                return checkpointed

        result: bool = self._call(run)
        return result

    def _genesis(self, ts: str) -> dict[str, Any]:
        return {
            "type": "genesis",
            "ts": ts,
            "file": f"postgresql:{self.schema}",
            "continues": False,
            "previous_seq": 0,
        }

    def probe(self) -> None:
        """Raise OSError unless the chain head can be read now."""
        self._call(lambda conn: conn.fetchval("SELECT seq FROM audit_head"))

    # ---- reading, for phi-audit ---------------------------------------------------------------

    def write_lines(self, out: BinaryIO, *, batch_rows: int = _EXPORT_BATCH) -> Head:
        """Write every line in sequence order to `out`, one batch at a time; the recorded head.

        One read-only snapshot (repeatable read), read through a server-side cursor: memory
        stays at one batch whatever the trail's length, and the sink's timeout bounds each
        round trip, not the whole export (a million events take longer than one timeout).
        """

        async def run(conn: Connection) -> Head:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                cursor = await conn.cursor(
                    "SELECT line FROM audit_events ORDER BY seq", timeout=self._timeout
                )
                while rows := await cursor.fetch(batch_rows, timeout=self._timeout):
                    out.writelines(row["line"].encode() + b"\n" for row in rows)
                head = await conn.fetchrow(
                    "SELECT seq, hash FROM audit_head", timeout=self._timeout
                )
            return Head(int(head["seq"]), str(head["hash"]))

        result: Head = self._call(run, bounded=False)
        return result


def export_trail(sink: PostgresSink, folder: Path) -> tuple[Path, Head]:
    """Write the trail to a JSON-lines file in `folder`, for `verify_files` and the report.

    Returns the file and the head recorded in the database (a trail that ends before it has
    lost its last events: `verify_files` cannot see that from the file alone).
    """
    path = folder / f"postgresql-{sink.schema}.jsonl"
    with path.open("wb") as handle:
        head = sink.write_lines(handle)
    return path, head


def _off_running_loop(fn: Callable[[], Any]) -> Any:  # noqa: ANN401
    """Run `fn` here, or on a helper thread if this thread is inside a running event loop.

    The private loop cannot run inside another loop's thread; a synchronous caller in async
    code (the `phi-grants` CLI recording a change) blocks for at most the sink's timeout.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(1, thread_name_prefix="phi-audit-pg") as pool:
        return pool.submit(fn).result()


async def _require_trail(conn: Connection, schema: str, where: str) -> None:
    """Check, without changing anything, that `schema` holds an audit trail this code reads."""
    exists = await conn.fetchval(
        "SELECT count(*) FROM information_schema.tables "
        "WHERE table_schema = $1 AND table_name = $2",
        schema,
        _VERSION_TABLE,
    )
    version = (
        await conn.fetchval(f'SELECT version FROM "{schema}".{_VERSION_TABLE}')  # noqa: S608
        if exists
        else 0
    )
    if not version:
        raise AuditStoreUnavailable(
            f"audit database {where}: no audit trail in schema {schema!r}; "
            "check audit.pg_schema and audit.dsn (a proxy creates the trail on first start)"
        )
    if version > len(_MIGRATIONS):
        raise AuditStoreUnavailable(
            f"audit database {where}: the audit schema {schema!r} has version {version}, newer "
            f"than this phi-proxy understands ({len(_MIGRATIONS)}); upgrade phi-proxy here"
        )


async def _migrate(conn: Connection, schema: str) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        has_schema = await conn.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", schema
        )
        if not has_schema:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        exists = await conn.fetchval(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = $1 AND table_name = $2",
            schema,
            _VERSION_TABLE,
        )
        if not exists:
            await conn.execute(f"CREATE TABLE {_VERSION_TABLE} (version integer NOT NULL)")
            await conn.execute(f"INSERT INTO {_VERSION_TABLE} VALUES (0)")  # noqa: S608
        version: int = await conn.fetchval(f"SELECT version FROM {_VERSION_TABLE}")  # noqa: S608
        if version > len(_MIGRATIONS):
            raise AuditStoreUnavailable(
                f"the audit schema {schema!r} has version {version}, newer than this phi-proxy "
                f"understands ({len(_MIGRATIONS)}); upgrade phi-proxy on this host"
            )
        if version == len(_MIGRATIONS):
            return  # nothing to do: a role without DDL or UPDATE rights gets this far
        for steps in _MIGRATIONS[version:]:
            for statement in steps:
                await conn.execute(statement)
        await conn.execute(
            f"UPDATE {_VERSION_TABLE} SET version = $1",  # noqa: S608
            len(_MIGRATIONS),
        )

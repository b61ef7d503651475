"""The fleet grant store: PostgreSQL through an asyncpg pool, revocations pushed by NOTIFY.

Same contract as the SQLite store (tests/grants/test_grants_store_contract.py runs on both).

Request path (`access_for`):
1. Anonymous caller → NO_ACCESS, database untouched.
2. While the change listener is LISTENing, a subject's grants (live ones, plus recently lapsed
   ones for `Access.lapsed`) are cached in memory; a hit costs no round trip. Every grant change
   NOTIFYs all replicas (a trigger does it, in the changing transaction), and the listener
   drops that subject's cache entry.
3. While the listener is not LISTENing, the cache is neither read nor filled: every request
   reads the database. So a notification lost during an outage can never extend access.
4. Every database call — connecting and migrating included — is bounded by `timeout`; a grant
   check that fails or runs out of time answers NO_ACCESS (PHI masked), logged at most once per
   `error_log_interval`. The timed-out call is abandoned to finish in the background: the
   request does not wait for it.

Worst case: see docs/fleet.md ("Revocation latency").

Connecting is lazy: constructing the store does no I/O (so `open_grant_store` stays synchronous
and a replica can start while the database is down, serving masked responses and reporting
not-ready); the first call connects, migrates and starts the listener, and a failed attempt is
retried by the next call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable
from proxy.grants.model import LAPSED_LOOKBACK, NO_ACCESS, Access, Grant, utc
from proxy.grants.postgres_bounded import abandon, within
from proxy.grants.postgres_listener import ChangeListener
from proxy.grants.postgres_schema import migrate, subject_digest
from proxy.grants.settings import DEFAULT_MAX_TTL
from proxy.grants.store import (
    GrantList,
    GrantRequest,
    check_revoke_target,
    clean_change,
    new_grant_id,
)
from proxy.identity.subject import Caller, Subject
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime, timedelta

    from asyncpg import Connection, Pool, Record

__all__ = ["PostgresGrantStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_COLUMNS = (
    "id, issuer, sub, practice, field_classes, not_before, expires_at, revoked_at, "
    "created_by, reason, created_at, revoked_by, revoke_reason"
)


def _row_to_grant(row: Record) -> Grant:
    fields = row["field_classes"]
    return Grant(
        id=row["id"],
        subject=Subject(row["issuer"], row["sub"]),
        practice=row["practice"],
        field_classes=None if fields is None else frozenset(fields),
        not_before=utc(row["not_before"]),
        expires_at=utc(row["expires_at"]),
        revoked_at=None if row["revoked_at"] is None else utc(row["revoked_at"]),
        created_by=row["created_by"],
        reason=row["reason"],
        created_at=utc(row["created_at"]),
        revoked_by=row["revoked_by"],
        revoke_reason=row["revoke_reason"],
    )


class PostgresGrantStore:
    """Grant store in a PostgreSQL schema shared by every replica and by `phi-grants`."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "phi_proxy",
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        timeout: float = 2.0,
        error_log_interval: float = 60.0,
        pool_size: int = 10,
        listen_check_interval: float = 5.0,
        cache_size: int = 10_000,
        application_name: str = "phi-proxy",
        new_id: Callable[[], str] = new_grant_id,
    ) -> None:
        """Remember where the database is; no I/O happens until the first call."""
        self._dsn = dsn
        self.where = f"{describe_postgres_url(dsn)} (schema {schema})"
        self.schema = schema
        self.max_ttl = max_ttl
        self._timeout = timeout
        self._pool_size = pool_size
        self._log_interval = error_log_interval
        self._cache_size = cache_size
        self._new_id = new_id
        self._server_settings = {
            "application_name": f"{application_name}-grants:{os.getpid()}",
            "search_path": schema,
        }
        self._pool: Pool | None = None
        self._opening: asyncio.Lock | None = None
        self._cache: OrderedDict[str, tuple[Grant, ...]] = OrderedDict()
        self._epoch = 0
        self._last_log: dict[str, float] = {}
        #: Grant-change notifications received for this schema (for tests and metrics).
        self.changes_seen = 0
        self.listener = ChangeListener(
            self._connect_listener,
            schema=schema,
            on_change=self._forget,
            on_state=self._listener_state,
            on_error=lambda exc: self._log_failure("listener", exc),
            check_interval=listen_check_interval,
            timeout=timeout,
        )

    def __repr__(self) -> str:
        return f"PostgresGrantStore({self.where!r})"

    # ---- connections ----------------------------------------------------------------------------

    async def _connect_listener(self) -> Connection:
        settings = dict(self._server_settings)
        settings["application_name"] = settings["application_name"].replace(
            "-grants:", "-grants-listener:"
        )
        conn: Connection = await asyncpg.connect(
            self._dsn, timeout=self._timeout, server_settings=settings
        )
        return conn

    async def _ready_pool(self) -> Pool:
        """The pool, creating it (and migrating the schema, starting the listener) if needed."""
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                pool = asyncpg.create_pool(
                    self._dsn,
                    min_size=0,
                    max_size=self._pool_size,
                    timeout=self._timeout,
                    command_timeout=self._timeout,
                    max_inactive_connection_lifetime=60.0,
                    server_settings=self._server_settings,
                )
                try:
                    await pool
                    async with pool.acquire() as conn:
                        await migrate(conn, schema=self.schema, where=self.where)
                except BaseException:
                    pool.terminate()
                    raise
                self._pool = pool
                self.listener.start()
        return self._pool

    async def _bounded(self, fn: Callable[[Connection], Awaitable[_T]]) -> _T:
        """Run `fn` on a pooled connection; give up after `timeout` without waiting for it."""

        async def call() -> _T:
            pool = await self._ready_pool()
            async with pool.acquire() as conn:
                return await fn(conn)

        return await within(self._timeout, call())

    # ---- cache and notifications ----------------------------------------------------------------

    def _forget(self, digest: str | None) -> None:
        self.changes_seen += 1
        self._epoch += 1
        if digest is None:
            self._cache.clear()
        else:
            self._cache.pop(digest, None)
        _log.debug(
            "grant change notification: that subject's cached grants dropped",
            extra={"fields": {"grant_changes_seen": self.changes_seen}},
        )

    def _listener_state(self, listening: bool) -> None:
        self._epoch += 1
        self._cache.clear()
        if listening:
            _log.info(
                "listening for grant changes on %s; grant cache enabled",
                self.where,
                extra={"fields": {"listener_backend_pid": self.listener.backend_pid}},
            )

    def _log_failure(self, what: str, exc: BaseException) -> None:
        moment = time.monotonic()
        last = self._last_log.get(what)
        if last is not None and moment - last < self._log_interval:
            return
        self._last_log[what] = moment
        if what == "listener":
            _log.warning(
                "grant-change notifications from %s are not arriving (%s: %s); grants are read "
                "from the database on every request until they do (logged at most every %.0f s)",
                self.where,
                exc.__class__.__name__,
                exc,
                self._log_interval,
            )
        else:
            _log.error(
                "grant store %s cannot be read (%s: %s); answering 'no access' to every caller "
                "until it recovers (logged at most every %.0f s)",
                self.where,
                exc.__class__.__name__,
                exc,
                self._log_interval,
            )

    # ---- request path ---------------------------------------------------------------------------

    async def access_for(self, caller: Caller, now: datetime) -> Access:
        """What `caller` may read at `now`; NO_ACCESS (and a rate-limited log) on any failure."""
        subject = caller.subject
        if subject is None:
            return NO_ACCESS
        key = subject_digest(subject)
        trusted = self.listener.listening
        if trusted:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return Access.from_grants(subject, cached, now)
        epoch = self._epoch
        try:
            grants = await self._bounded(lambda conn: self._live_grants(conn, subject, now))
        except Exception as exc:  # noqa: BLE001 - fail closed on anything, log the class only
            self._log_failure("read", exc)
            return NO_ACCESS
        if trusted and self.listener.listening and epoch == self._epoch:
            self._cache[key] = grants
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return Access.from_grants(subject, grants, now)

    @staticmethod
    async def _live_grants(conn: Connection, subject: Subject, now: datetime) -> tuple[Grant, ...]:
        rows = await conn.fetch(
            f"SELECT {_COLUMNS} FROM grants WHERE issuer = $1 AND sub = $2 "  # noqa: S608
            "AND ((revoked_at IS NULL AND expires_at > $3) "
            "OR COALESCE(revoked_at, expires_at) > $4)",  # recently lapsed: for Access.lapsed
            subject.issuer,
            subject.sub,
            utc(now),
            utc(now) - LAPSED_LOOKBACK,
        )
        return tuple(_row_to_grant(row) for row in rows)

    # ---- administration -------------------------------------------------------------------------

    async def _write(self, fn: Callable[[Connection], Awaitable[_T]]) -> _T:
        async def transaction(conn: Connection) -> _T:
            async with conn.transaction():
                return await fn(conn)

        try:
            return await self._bounded(transaction)
        except GrantError:
            raise
        except TimeoutError:
            raise GrantStoreUnavailable(
                f"{self.where}: the grant database did not answer within {self._timeout:g} s; "
                "the change may or may not have been made: check with phi-grants list"
            ) from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise GrantStoreUnavailable(
                f"{self.where}: the grant database refused the change "
                f"({exc.__class__.__name__}: {exc}); nothing was changed"
            ) from None
        finally:
            self._forget_all_locally()

    def _forget_all_locally(self) -> None:
        """Our own change is visible to our next call even before its notification arrives."""
        self._epoch += 1
        self._cache.clear()

    async def add(self, request: GrantRequest, *, now: datetime) -> Grant:
        """Store the grant `request` describes; GrantError when it breaks max_ttl or a rule."""
        grant = request.build(self._new_id(), now=now, max_ttl=self.max_ttl)
        fields = None if grant.field_classes is None else sorted(grant.field_classes)

        async def insert(conn: Connection) -> Grant:
            await conn.execute(
                "INSERT INTO grants (id, issuer, sub, practice, field_classes, not_before, "
                "expires_at, created_at, created_by, reason) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                grant.id,
                grant.subject.issuer,
                grant.subject.sub,
                grant.practice,
                fields,
                grant.not_before,
                grant.expires_at,
                grant.created_at,
                grant.created_by,
                grant.reason,
            )
            await self._event(
                conn,
                [grant.id],
                "add",
                at=grant.created_at,
                by=grant.created_by,
                reason=grant.reason,
            )
            return grant

        return await self._write(insert)

    @staticmethod
    async def _event(
        conn: Connection, ids: list[str], action: str, *, at: datetime, by: str, reason: str
    ) -> None:
        await conn.executemany(
            "INSERT INTO grant_events (grant_id, action, at, by, reason) VALUES ($1,$2,$3,$4,$5)",
            [(grant_id, action, at, by, reason) for grant_id in ids],
        )

    async def revoke(
        self,
        *,
        grant_id: str | None = None,
        subject: Subject | None = None,
        practice: str | None = None,
        by: str,
        reason: str,
        now: datetime,
    ) -> GrantList:
        """Revoke grant `grant_id`, or every unexpired grant of `subject` at `practice`."""
        check_revoke_target(grant_id, subject, practice)
        by, reason = clean_change(by, reason)

        async def run(conn: Connection) -> GrantList:
            if grant_id is not None:
                row = await conn.fetchrow(
                    "SELECT revoked_at, revoked_by FROM grants WHERE id = $1 FOR UPDATE", grant_id
                )
                if row is None:
                    raise GrantNotFound(f"no grant has id {grant_id!r}; see: phi-grants list")
                if row["revoked_at"] is not None:
                    raise GrantNotFound(
                        f"grant {grant_id} was already revoked at "
                        f"{utc(row['revoked_at']):%Y-%m-%dT%H:%M:%SZ} by {row['revoked_by']}"
                    )
                return await self._revoke_ids(conn, [grant_id], by, reason, now)
            assert subject is not None  # noqa: S101 - checked above; narrows for mypy
            ids = await conn.fetch(
                "SELECT id FROM grants WHERE issuer = $1 AND sub = $2 AND practice = $3 "
                "AND revoked_at IS NULL AND expires_at > $4 FOR UPDATE",
                subject.issuer,
                subject.sub,
                practice,
                utc(now),
            )
            if not ids:
                raise GrantNotFound(f"{subject} has no unexpired grant for practice {practice}")
            return await self._revoke_ids(conn, [r["id"] for r in ids], by, reason, now)

        return await self._write(run)

    async def offboard(self, subject: Subject, *, by: str, reason: str, now: datetime) -> GrantList:
        """Revoke every unexpired grant of `subject`; an empty list when there was none."""
        by, reason = clean_change(by, reason)

        async def run(conn: Connection) -> GrantList:
            ids = await conn.fetch(
                "SELECT id FROM grants WHERE issuer = $1 AND sub = $2 "
                "AND revoked_at IS NULL AND expires_at > $3 FOR UPDATE",
                subject.issuer,
                subject.sub,
                utc(now),
            )
            return await self._revoke_ids(conn, [r["id"] for r in ids], by, reason, now)

        return await self._write(run)

    async def _revoke_ids(
        self, conn: Connection, ids: list[str], by: str, reason: str, now: datetime
    ) -> GrantList:
        if not ids:
            return []
        rows = await conn.fetch(
            "UPDATE grants SET revoked_at = $2, revoked_by = $3, revoke_reason = $4 "  # noqa: S608
            f"WHERE id = ANY($1) AND revoked_at IS NULL RETURNING {_COLUMNS}",
            ids,
            utc(now),
            by,
            reason,
        )
        await self._event(
            conn, [row["id"] for row in rows], "revoke", at=utc(now), by=by, reason=reason
        )
        return sorted((_row_to_grant(row) for row in rows), key=lambda g: (g.created_at, g.id))

    async def list(
        self,
        *,
        practice: str | None = None,
        subject: Subject | None = None,
        active_at: datetime | None = None,
        expiring_within: timedelta | None = None,
    ) -> GrantList:
        """Grants matching every filter given, oldest first; `expiring_within` needs `active_at`."""
        clauses: list[str] = []
        params: list[object] = []

        def param(value: object) -> str:
            params.append(value)
            return f"${len(params)}"

        if practice is not None:
            clauses.append(f"practice = {param(practice)}")
        if subject is not None:
            clauses.append(f"issuer = {param(subject.issuer)} AND sub = {param(subject.sub)}")
        if active_at is not None:
            at = param(utc(active_at))
            clauses.append(f"revoked_at IS NULL AND not_before <= {at} AND expires_at > {at}")
        if expiring_within is not None:
            if active_at is None:
                raise ValueError("expiring_within needs active_at")
            clauses.append(f"expires_at <= {param(utc(active_at) + expiring_within)}")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM grants{where} ORDER BY created_at, id"  # noqa: S608 - fixed fragments only
        try:
            rows = await self._bounded(lambda conn: conn.fetch(sql, *params))
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise GrantStoreUnavailable(
                f"{self.where}: cannot read grants ({exc.__class__.__name__}: {exc})"
            ) from None
        return [_row_to_grant(row) for row in rows]

    async def ping(self) -> bool:
        """True when the grants table can be read now (within the store timeout)."""
        try:
            await self._bounded(lambda conn: conn.fetchval("SELECT 1 FROM grants LIMIT 1"))
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return False
        return True

    async def close(self) -> None:
        """Stop the listener and close the pool; never waits much longer than `timeout`."""
        await self.listener.stop()
        pool, self._pool = self._pool, None
        if pool is not None:
            closing = asyncio.ensure_future(pool.close())
            done, _ = await asyncio.wait({closing}, timeout=self._timeout)
            if not done:  # a connection is stuck (e.g. a silent network): cut them all
                pool.terminate()
                abandon(closing)

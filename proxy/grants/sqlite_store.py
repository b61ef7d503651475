"""The embedded grant store: one SQLite file in WAL mode, shared by proxies and `phi-grants`.

Request path (`access_for`), at most one store round trip:
1. Anonymous caller → NO_ACCESS, store untouched.
2. `PRAGMA data_version` on a dedicated read-only probe connection, inline on the event loop
   (~4 µs measured; busy_timeout 0, so it can never wait on a lock). It changes whenever any
   other connection — another proxy process, `phi-grants`, or this store's own writer — commits.
   A change empties the per-subject cache.
3. Cache hit → the subject's unexpired, unrevoked grants from memory; miss → one indexed SELECT on
   a worker thread (a thread hop costs ~90 µs, which is why hits stay inline).
4. `Access.from_grants(…, now)` applies not_before/expiry at `now`, so time never needs a timer.

Worst case: a revocation is seen by every `access_for` that starts after the revoking transaction
commits; a request whose `access_for` finished before the commit completes with the old answer.

Writes run on the same single worker thread inside `BEGIN IMMEDIATE`, so they serialise with
other processes through SQLite's lock (waiting up to busy_timeout), never on the event loop.
Opening the store (schema creation/migration) is synchronous: it happens once, at startup.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from proxy.grants.errors import GrantNotFound, GrantStoreUnavailable
from proxy.grants.model import LAPSED_LOOKBACK, NO_ACCESS, Access, Grant, utc
from proxy.grants.settings import DEFAULT_MAX_TTL
from proxy.grants.sqlite_schema import migrate
from proxy.grants.store import (
    GrantList,
    GrantRequest,
    check_revoke_target,
    clean_change,
    new_grant_id,
)
from proxy.identity.subject import Caller, Subject

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["SQLiteGrantStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
_COLUMNS = (
    "id, issuer, sub, practice, field_classes, not_before, expires_at, revoked_at, "
    "created_by, reason, created_at, revoked_by, revoke_reason"
)


def _db_time(moment: datetime) -> str:
    return utc(moment).strftime(_TIME)


def _py_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.strptime(text, _TIME).replace(tzinfo=UTC)


def _row_to_grant(row: tuple[Any, ...]) -> Grant:
    fields = None if row[4] is None else frozenset(json.loads(row[4]))
    not_before, expires_at, created_at = _py_time(row[5]), _py_time(row[6]), _py_time(row[10])
    if not_before is None or expires_at is None or created_at is None:  # pragma: no cover
        raise GrantStoreUnavailable("grant row with a missing time (NOT NULL violated)")
    return Grant(
        id=row[0],
        subject=Subject(row[1], row[2]),
        practice=row[3],
        field_classes=fields,
        not_before=not_before,
        expires_at=expires_at,
        revoked_at=_py_time(row[7]),
        created_by=row[8],
        reason=row[9],
        created_at=created_at,
        revoked_by=row[11],
        revoke_reason=row[12],
    )


class SQLiteGrantStore:
    """Grant store in one SQLite file; safe for several processes and the CLI at once."""

    def __init__(
        self,
        path: Path,
        *,
        max_ttl: timedelta = DEFAULT_MAX_TTL,
        busy_timeout: float = 5.0,
        error_log_interval: float = 60.0,
        cache_size: int = 10_000,
        new_id: Callable[[], str] = new_grant_id,
    ) -> None:
        """Open (creating or migrating) the database; raise GrantStoreUnavailable if impossible."""
        self.path = path
        self.max_ttl = max_ttl
        self._busy_timeout = busy_timeout
        self._log_interval = error_log_interval
        self._cache_size = cache_size
        self._new_id = new_id
        self._cache: OrderedDict[Subject, tuple[Grant, ...]] = OrderedDict()
        self._cache_version: int | None = None
        self._last_error_log: float | None = None
        self._worker_conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phi-grants-db")
        try:
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            setup = self._connect(busy_timeout)
            try:
                migrate(setup, where=str(path))
            finally:
                setup.close()
            # The probe is only ever used from the event loop thread, one call at a time.
            self._probe = sqlite3.connect(
                path, isolation_level=None, timeout=0, check_same_thread=False
            )
            self._probe.execute("PRAGMA busy_timeout = 0")
            self._probe.execute("PRAGMA query_only = ON")
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown(wait=False)
            raise GrantStoreUnavailable(
                f"{path}: cannot open the grant database ({exc.__class__.__name__}: {exc}); "
                "check that the folder exists and is writable by this user"
            ) from None

    def __repr__(self) -> str:
        return f"SQLiteGrantStore({str(self.path)!r})"

    def _connect(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=timeout)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000):d}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def call() -> _T:
            if self._worker_conn is None:
                self._worker_conn = self._connect(self._busy_timeout)
            return fn(self._worker_conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # ---- request path -------------------------------------------------------------------------

    async def access_for(self, caller: Caller, now: datetime) -> Access:
        """What `caller` may read at `now`; NO_ACCESS (and a rate-limited log) on any failure."""
        subject = caller.subject
        if subject is None:
            return NO_ACCESS
        try:
            version: int | None = self._probe.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            version = None  # cannot tell whether the cache is fresh: bypass it
        if version is not None:
            if version != self._cache_version:
                self._cache.clear()
                self._cache_version = version
            cached = self._cache.get(subject)
            if cached is not None:
                self._cache.move_to_end(subject)
                return Access.from_grants(subject, cached, now)
        try:
            grants = await self._run(lambda conn: self._live_grants(conn, subject, now))
        except Exception as exc:  # noqa: BLE001 - fail closed on anything, log the class only
            self._log_failure(exc, now)
            return NO_ACCESS
        if version is not None and version == self._cache_version:
            self._cache[subject] = grants
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return Access.from_grants(subject, grants, now)

    @staticmethod
    def _live_grants(
        conn: sqlite3.Connection, subject: Subject, now: datetime
    ) -> tuple[Grant, ...]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM grants WHERE issuer = ? AND sub = ? "  # noqa: S608 - constant
            "AND ((revoked_at IS NULL AND expires_at > ?) "
            "OR COALESCE(revoked_at, expires_at) > ?)",  # recently lapsed: for Access.lapsed
            (subject.issuer, subject.sub, _db_time(now), _db_time(now - LAPSED_LOOKBACK)),
        ).fetchall()
        return tuple(_row_to_grant(row) for row in rows)

    def _log_failure(self, exc: BaseException, now: datetime) -> None:
        moment = now.timestamp()
        if self._last_error_log is None or moment - self._last_error_log >= self._log_interval:
            self._last_error_log = moment
            _log.error(
                "grant store %s cannot be read (%s: %s); answering 'no access' to every "
                "caller until it recovers (logged at most every %.0f s)",
                self.path,
                exc.__class__.__name__,
                exc,
                self._log_interval,
            )

    # ---- administration -----------------------------------------------------------------------

    async def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        def transaction(conn: sqlite3.Connection) -> _T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        try:
            return await self._run(transaction)
        except sqlite3.Error as exc:
            raise GrantStoreUnavailable(
                f"{self.path}: the grant database refused the change ({exc}); nothing was changed"
            ) from None
        finally:
            self._cache.clear()

    async def add(self, request: GrantRequest, *, now: datetime) -> Grant:
        """Store the grant `request` describes; GrantError when it breaks max_ttl or a rule."""
        grant = request.build(self._new_id(), now=now, max_ttl=self.max_ttl)

        def insert(conn: sqlite3.Connection) -> Grant:
            fields = (
                None if grant.field_classes is None else json.dumps(sorted(grant.field_classes))
            )
            conn.execute(
                "INSERT INTO grants (id, issuer, sub, practice, field_classes, not_before, "
                "expires_at, created_at, created_by, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    grant.id,
                    grant.subject.issuer,
                    grant.subject.sub,
                    grant.practice,
                    fields,
                    _db_time(grant.not_before),
                    _db_time(grant.expires_at),
                    _db_time(grant.created_at),
                    grant.created_by,
                    grant.reason,
                ),
            )
            self._event(
                conn,
                grant.id,
                action="add",
                at=grant.created_at,
                by=grant.created_by,
                reason=grant.reason,
            )
            return grant

        return await self._write(insert)

    @staticmethod
    def _event(
        conn: sqlite3.Connection, grant_id: str, *, action: str, at: datetime, by: str, reason: str
    ) -> None:
        conn.execute(
            "INSERT INTO grant_events (grant_id, action, at, by, reason) VALUES (?,?,?,?,?)",
            (grant_id, action, _db_time(at), by, reason),
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

        def select(conn: sqlite3.Connection) -> list[str]:
            if grant_id is not None:
                row = conn.execute(
                    "SELECT revoked_at, revoked_by FROM grants WHERE id = ?", (grant_id,)
                ).fetchone()
                if row is None:
                    raise GrantNotFound(f"no grant has id {grant_id!r}; see: phi-grants list")
                if row[0] is not None:
                    raise GrantNotFound(
                        f"grant {grant_id} was already revoked at {row[0]} by {row[1]}"
                    )
                return [grant_id]
            assert subject is not None  # noqa: S101 - checked above; narrows for mypy
            ids = conn.execute(
                "SELECT id FROM grants WHERE issuer = ? AND sub = ? AND practice = ? "
                "AND revoked_at IS NULL AND expires_at > ?",
                (subject.issuer, subject.sub, practice, _db_time(now)),
            ).fetchall()
            if not ids:
                raise GrantNotFound(f"{subject} has no unexpired grant for practice {practice}")
            return [i[0] for i in ids]

        return await self._write(lambda conn: self._revoke_ids(conn, select(conn), by, reason, now))

    async def offboard(self, subject: Subject, *, by: str, reason: str, now: datetime) -> GrantList:
        """Revoke every unexpired grant of `subject`; an empty list when there was none."""
        by, reason = clean_change(by, reason)

        def run(conn: sqlite3.Connection) -> GrantList:
            ids = conn.execute(
                "SELECT id FROM grants WHERE issuer = ? AND sub = ? "
                "AND revoked_at IS NULL AND expires_at > ?",
                (subject.issuer, subject.sub, _db_time(now)),
            ).fetchall()
            return self._revoke_ids(conn, [i[0] for i in ids], by, reason, now)

        return await self._write(run)

    def _revoke_ids(
        self, conn: sqlite3.Connection, ids: list[str], by: str, reason: str, now: datetime
    ) -> GrantList:
        revoked = []
        for grant_id in ids:
            conn.execute(
                "UPDATE grants SET revoked_at = ?, revoked_by = ?, revoke_reason = ? "
                "WHERE id = ? AND revoked_at IS NULL",
                (_db_time(now), by, reason, grant_id),
            )
            self._event(conn, grant_id, action="revoke", at=now, by=by, reason=reason)
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM grants WHERE id = ?",  # noqa: S608 - constant columns
                (grant_id,),
            ).fetchone()
            revoked.append(_row_to_grant(row))
        return revoked

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
        params: list[str] = []
        if practice is not None:
            clauses.append("practice = ?")
            params.append(practice)
        if subject is not None:
            clauses += ["issuer = ?", "sub = ?"]
            params += [subject.issuer, subject.sub]
        if active_at is not None:
            clauses += ["revoked_at IS NULL", "not_before <= ?", "expires_at > ?"]
            params += [_db_time(active_at)] * 2
        if expiring_within is not None:
            if active_at is None:
                raise ValueError("expiring_within needs active_at")
            clauses.append("expires_at <= ?")
            params.append(_db_time(active_at + expiring_within))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM grants{where} ORDER BY created_at, id"  # noqa: S608 - fixed fragments only
        try:
            rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise GrantStoreUnavailable(f"{self.path}: cannot read grants ({exc})") from None
        return [_row_to_grant(row) for row in rows]

    async def ping(self) -> bool:
        """True when the grants table can be read now."""
        try:
            await self._run(lambda conn: conn.execute("SELECT 1 FROM grants LIMIT 1").fetchall())
        except sqlite3.Error:
            return False
        return True

    async def close(self) -> None:
        """Close both connections and stop the worker thread."""

        def close_worker(_conn: sqlite3.Connection) -> None:
            if self._worker_conn is not None:
                self._worker_conn.close()
                self._worker_conn = None

        if self._worker_conn is not None:
            await self._run(close_worker)
        self._probe.close()
        self._executor.shutdown(wait=False)

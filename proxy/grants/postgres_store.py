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

Connecting is lazy: constructing the store does no I/O, and the first call connects, migrates
and starts the listener (postgres_connections.py). The statements themselves are in
postgres_queries.py.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, TypeVar

import asyncpg

from proxy.grants import break_glass_postgres as bg_sql
from proxy.grants.access_memo import AccessMemo
from proxy.grants.break_glass_model import (
    BreakGlassUse,
    BreakGlassUses,
    Opened,
    clean_signoff,
    limit_reached,
    new_break_glass_id,
)
from proxy.grants.errors import GrantError, GrantStoreUnavailable
from proxy.grants.failure_log import ThrottledFailureLog
from proxy.grants.model import NO_ACCESS, Access, Grant
from proxy.grants.postgres_connections import PostgresConnections
from proxy.grants.postgres_queries import (
    grant_from_row,
    insert_grant,
    list_query,
    live_grants,
    revoke_matching,
    revoke_unexpired,
)
from proxy.grants.postgres_schema import subject_digest
from proxy.grants.settings import DEFAULT_MAX_TTL
from proxy.grants.store import (
    GrantList,
    GrantRequest,
    check_revoke_target,
    clean_change,
    new_grant_id,
)
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import datetime, timedelta

    from asyncpg import Connection

    from proxy.identity.subject import Caller, Subject

__all__ = ["PostgresGrantStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")


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
        self.where = f"{describe_postgres_url(dsn)} (schema {schema})"
        self.schema = schema
        self.max_ttl = max_ttl
        self._timeout = timeout
        self._cache_size = cache_size
        self._new_id = new_id
        self._cache: OrderedDict[str, AccessMemo] = OrderedDict()
        self._epoch = 0
        self._failures = ThrottledFailureLog(_log, self.where, error_log_interval)
        #: Grant-change notifications received for this schema (for tests and metrics).
        self.changes_seen = 0
        self._connections = PostgresConnections(
            dsn,
            schema=schema,
            where=self.where,
            timeout=timeout,
            pool_size=pool_size,
            application_name=application_name,
            listen_check_interval=listen_check_interval,
            on_change=self._forget,
            on_state=self._listener_state,
            on_error=self._log_listener_failure,
        )
        self.listener = self._connections.listener

    def __repr__(self) -> str:
        return f"PostgresGrantStore({self.where!r})"

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

    def _log_listener_failure(self, exc: BaseException) -> None:
        if self._failures.due("listener", time.monotonic()):
            _log.warning(
                "grant-change notifications from %s are not arriving (%s: %s); grants are read "
                "from the database on every request until they do (logged at most every %.0f s)",
                self.where,
                exc.__class__.__name__,
                exc,
                self._failures.interval,
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
                return cached.at(now)
        epoch = self._epoch
        try:
            grants = await self._connections.bounded(lambda conn: live_grants(conn, subject, now))
        except Exception as exc:  # noqa: BLE001 - fail closed on anything, log the class only
            self._failures.read_failed(exc, time.monotonic())
            self._forget_all()
            return NO_ACCESS
        if trusted and self.listener.listening and epoch == self._epoch:
            memo = AccessMemo(subject, grants, now)
            self._cache[key] = memo
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return memo.at(now)
        return Access.from_grants(subject, grants, now)

    # ---- administration -------------------------------------------------------------------------

    async def _write(self, fn: Callable[[Connection], Awaitable[_T]]) -> _T:
        async def transaction(conn: Connection) -> _T:
            async with conn.transaction():
                return await fn(conn)

        try:
            return await self._connections.bounded(transaction)
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
        return await self._write(lambda conn: insert_grant(conn, grant))

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
        return await self._write(
            lambda conn: revoke_matching(
                conn, grant_id, subject, practice, by=by, reason=reason, now=now
            )
        )

    async def offboard(self, subject: Subject, *, by: str, reason: str, now: datetime) -> GrantList:
        """Revoke every unexpired grant of `subject`; an empty list when there was none."""
        by, reason = clean_change(by, reason)
        return await self._write(
            lambda conn: revoke_unexpired(conn, subject, by=by, reason=reason, now=now)
        )

    async def list(
        self,
        *,
        practice: str | None = None,
        subject: Subject | None = None,
        active_at: datetime | None = None,
        expiring_within: timedelta | None = None,
    ) -> GrantList:
        """Grants matching every filter given, oldest first; `expiring_within` needs `active_at`."""
        sql, params = list_query(
            practice=practice,
            subject=subject,
            active_at=active_at,
            expiring_within=expiring_within,
        )
        try:
            rows = await self._connections.bounded(lambda conn: conn.fetch(sql, *params))
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise GrantStoreUnavailable(
                f"{self.where}: cannot read grants ({exc.__class__.__name__}: {exc})"
            ) from None
        return [grant_from_row(row) for row in rows]

    @property
    def cached_subjects(self) -> int:
        """Subjects whose grants are cached right now (for metrics)."""
        return len(self._cache)

    # ---- break-glass (proxy.grants.break_glass) -------------------------------------------------

    async def open_break_glass(
        self, request: GrantRequest, *, now: datetime, max_per_day: int
    ) -> Opened:
        """The caller's active break-glass grant at the practice, or a new one within the limit.

        BreakGlassLimitReached when `max_per_day` grants were opened in the last 24 hours.
        """
        grant = request.build(new_break_glass_id(), now=now, max_ttl=self.max_ttl)
        result = await self._write(
            lambda conn: bg_sql.open_break_glass(conn, grant, now, max_per_day)
        )
        if isinstance(result, Opened):
            return result
        raise limit_reached(*result, max_per_day)

    async def break_glass_uses(self, *, pending_only: bool = False) -> BreakGlassUses:
        """Every break-glass use with its sign-off (or only those awaiting one), oldest first."""
        try:
            return await self._connections.bounded(
                lambda conn: bg_sql.uses(conn, pending_only=pending_only)
            )
        except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise GrantStoreUnavailable(
                f"{self.where}: cannot read break-glass uses ({exc.__class__.__name__}: {exc})"
            ) from None

    async def sign_off_break_glass(
        self, grant_id: str, *, by: str, note: str, now: datetime
    ) -> BreakGlassUse:
        """Record a security officer's final sign-off of one break-glass use."""
        by, note = clean_signoff(by, note)
        return await self._write(lambda conn: bg_sql.sign_off(conn, grant_id, by, note, now))

    async def ping(self) -> bool:
        """True when the grants table can be read now (within the store timeout)."""
        try:
            await self._connections.bounded(
                lambda conn: conn.fetchval("SELECT 1 FROM grants LIMIT 1")
            )
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            self._forget_all()
            return False
        return True

    def _forget_all(self) -> None:
        """Empty the cache when the database stops answering.

        The change notifications may not have failed yet (a silent network loses no socket for
        a while), so a cache trusted until then could keep granting access that was revoked in
        the meantime. Nothing refills it until a read succeeds again.
        """
        self._cache.clear()
        self._epoch += 1  # a lookup already in flight must not put its answer back

    async def close(self) -> None:
        """Stop the listener and close the pool; never waits much longer than `timeout`."""
        await self._connections.close()

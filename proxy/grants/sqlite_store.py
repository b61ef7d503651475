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

The file itself is followed too: every `access_for` compares the path's device and inode with the
file the connections have open (one `stat`, ~1 µs). A file replaced on disk (restored from a
backup, moved over) is reopened before it is read, so a revocation made in the new file counts
on the next request; a file deleted or moved away means no access for everyone (and `/readyz`
not ready) until it is back — the open connections would otherwise keep answering from the
unlinked file, unseen by any operator.

Worst case: a revocation is seen by every `access_for` that starts after the revoking transaction
commits; a request whose `access_for` finished before the commit completes with the old answer.

Writes run on the same single worker thread inside `BEGIN IMMEDIATE`, so they serialise with
other processes through SQLite's lock (waiting up to busy_timeout), never on the event loop.
Opening the store (schema creation/migration) is synchronous: it happens once, at startup.
The statements themselves, and how rows and times are stored, are in sqlite_queries.py.

File modes: the database file is the access-control boundary (THREAT_MODEL.md), so a database
(or its -wal/-shm) that group or others may *write* is refused before it is read — anyone who
can write it can grant themselves access. One that others may only *read* is used, with a
warning: it reveals who may see which practice, not PHI. Group-writable is refused too, even
for the proxy's own group: in a Kubernetes pod every container is in the fsGroup, so the group
is not one user. The refusal names the kubelet's fsGroup change when it sees its signature.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from keys.file_modes import GROUP_OR_OTHERS, GROUP_OR_OTHERS_WRITE, loose_mode_problem
from proxy.grants import break_glass_sqlite as bg_sql
from proxy.grants.access_memo import AccessMemo
from proxy.grants.break_glass_model import (
    BreakGlassUse,
    BreakGlassUses,
    Opened,
    clean_signoff,
    limit_reached,
    new_break_glass_id,
)
from proxy.grants.errors import GrantStoreUnavailable
from proxy.grants.failure_log import ThrottledFailureLog
from proxy.grants.model import NO_ACCESS, Access, Grant
from proxy.grants.settings import DEFAULT_MAX_TTL
from proxy.grants.sqlite_queries import (
    grant_from_row,
    insert_grant,
    list_query,
    live_grants,
    revoke_ids,
    revoke_targets,
    unexpired_ids,
)
from proxy.grants.sqlite_schema import migrate
from proxy.grants.store import (
    GrantList,
    GrantRequest,
    check_revoke_target,
    clean_change,
    new_grant_id,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, timedelta
    from pathlib import Path

    from proxy.identity.subject import Caller, Subject

__all__ = ["SQLiteGrantStore"]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
_SIDE_FILES = ("", "-wal", "-shm")


#: What the kubelet leaves when it applies a pod's fsGroup to a volume at mount (see below).
_FS_GROUP_HINT = (
    ". This looks like Kubernetes applying the pod's fsGroup at mount (group-writable files in a "
    "setgid folder of that group): set `fsGroupChangePolicy: OnRootMismatch` in the pod's "
    "securityContext, as deploy/kubernetes/phi-proxy.yaml does, so the kubelet stops doing it "
    "at every mount, then chmod once as above (docs/deploy.md)"
)


def _fs_group_hint(file: Path) -> str:
    """The Kubernetes fix, when `file` carries the kubelet's fsGroup signature; else "".

    The kubelet's recursive fsGroup change (the default `Always` policy) sets g+rw on every file
    and g+rwx plus setgid on every folder, all owned by the fsGroup. A database in a setgid
    folder of its own group is that, not a careless chmod.
    """
    try:
        folder, info = file.parent.stat(), file.stat()
    except OSError:
        return ""
    if folder.st_mode & stat.S_ISGID and folder.st_gid == info.st_gid:
        return _FS_GROUP_HINT
    return ""


def _check_modes(path: Path) -> None:
    """Refuse a grant database others may write; warn (log) when others may read it."""
    files = [path.with_name(path.name + suffix) for suffix in _SIDE_FILES]
    for file in files:
        problem = loose_mode_problem(file, "grant database", forbid=GROUP_OR_OTHERS_WRITE)
        if problem is not None:
            raise GrantStoreUnavailable(
                f"{problem}. Refusing to use it: anyone who can write it can grant themselves "
                "access to PHI. Until it is fixed the proxy does not start and phi-grants "
                "does nothing; after fixing it, look for grants nobody made (`phi-grants list`)"
                f"{_fs_group_hint(file)}"
            )
    for file in files:
        problem = loose_mode_problem(file, "grant database", forbid=GROUP_OR_OTHERS)
        if problem is not None:
            _log.warning(
                "%s. It is used anyway: others can read who may see which practice, not PHI",
                problem,
            )
            return  # one warning: its fix names the -wal/-shm files too


_DATA_VERSION = "PRAGMA data_version"


def _identity(path: Path | str) -> tuple[int, int]:
    """(device, inode) of the file at `path` (OSError if there is none)."""
    info = os.stat(path)  # noqa: PTH116 - only the two numbers are needed
    return info.st_dev, info.st_ino


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
        self._path_text = os.fspath(path)  # stat'ed on every request: skip Path's conversion
        self.max_ttl = max_ttl
        self._busy_timeout = busy_timeout
        self._cache_size = cache_size
        self._new_id = new_id
        self._cache: OrderedDict[Subject, AccessMemo] = OrderedDict()
        self._cache_version: int | None = None
        self._failures = ThrottledFailureLog(_log, path, error_log_interval)
        self._worker_conn: sqlite3.Connection | None = None
        #: Bumped when the file at `path` was replaced: the worker reconnects in its thread.
        self._generation = 0
        self._worker_generation = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="phi-grants-db")
        try:
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            _check_modes(path)
            setup = self._connect(busy_timeout)
            try:
                migrate(setup, where=str(path), wait=busy_timeout)
            finally:
                setup.close()
            self._probe = self._open_probe()
            #: One cursor for the per-request change check (`execute` makes one per call).
            self._version_cursor = self._probe.cursor()
            self._identity = _identity(path)
        except GrantStoreUnavailable:
            self._executor.shutdown(wait=False)
            raise
        except (OSError, sqlite3.Error) as exc:
            self._executor.shutdown(wait=False)
            raise GrantStoreUnavailable(
                f"{path}: cannot open the grant database ({exc.__class__.__name__}: {exc}); "
                "check that the folder exists and is writable by this user"
            ) from None

    def __repr__(self) -> str:
        return f"SQLiteGrantStore({str(self.path)!r})"

    def _open_probe(self) -> sqlite3.Connection:
        # The probe is only ever used from the event loop thread, one call at a time.
        probe = sqlite3.connect(self.path, isolation_level=None, timeout=0, check_same_thread=False)
        probe.execute("PRAGMA busy_timeout = 0")
        probe.execute("PRAGMA query_only = ON")
        return probe

    def _same_file(self, moment: float) -> bool:
        """Follow the file at `path`: reopen if it was replaced; False if it is gone.

        Runs on the event loop without awaiting, so no request reads between the check and
        the reopen. The worker thread's connection is replaced lazily (generation).
        """
        try:
            identity = _identity(self._path_text)
        except OSError as exc:
            self._failures.read_failed(
                GrantStoreUnavailable(
                    f"the grant database file is gone ({exc.strerror}): deleted or moved while "
                    "the proxy runs; put it back (or restart with the right grants.store)"
                ),
                moment,
            )
            return False
        if identity == self._identity:
            return True
        try:
            _check_modes(self.path)
            probe = self._open_probe()
        except (GrantStoreUnavailable, sqlite3.Error) as exc:
            self._failures.read_failed(exc, moment)
            return False
        self._probe.close()
        self._probe = probe
        self._version_cursor = probe.cursor()
        self._identity = identity
        self._generation += 1
        self._cache.clear()
        self._cache_version = None
        _log.warning("grant database %s was replaced on disk; reading the new file", self.path)
        return True

    def _connect(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=timeout)
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000):d}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        generation = self._generation

        def call() -> _T:
            if self._worker_conn is not None and self._worker_generation != generation:
                self._worker_conn.close()  # the file was replaced: read the new one
                self._worker_conn = None
            if self._worker_conn is None:
                self._worker_conn = self._connect(self._busy_timeout)
                self._worker_generation = generation
            return fn(self._worker_conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    # ---- request path -------------------------------------------------------------------------

    async def access_for(self, caller: Caller, now: datetime) -> Access:
        """What `caller` may read at `now`; NO_ACCESS (and a rate-limited log) on any failure."""
        subject = caller.subject
        if subject is None:
            return NO_ACCESS
        if not self._same_file(now.timestamp()):
            return NO_ACCESS
        try:
            version: int | None = self._version_cursor.execute(_DATA_VERSION).fetchone()[0]
        except sqlite3.Error:
            version = None  # cannot tell whether the cache is fresh: bypass it
        if version is not None:
            if version != self._cache_version:
                self._cache.clear()
                self._cache_version = version
            cached = self._cache.get(subject)
            if cached is not None:
                self._cache.move_to_end(subject)
                return cached.at(now)
        generation = self._generation  # a replaced file must not fill the cache with old rows
        try:
            grants = await self._run(lambda conn: live_grants(conn, subject, now))
        except Exception as exc:  # noqa: BLE001 - fail closed on anything, log the class only
            self._failures.read_failed(exc, now.timestamp())
            return NO_ACCESS
        if (
            version is not None
            and version == self._cache_version
            and generation == self._generation
        ):
            memo = AccessMemo(subject, grants, now)
            self._cache[subject] = memo
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return memo.at(now)
        return Access.from_grants(subject, grants, now)

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

        def run(conn: sqlite3.Connection) -> GrantList:
            ids = revoke_targets(conn, grant_id, subject, practice, now)
            return revoke_ids(conn, ids, by, reason, now)

        return await self._write(run)

    async def offboard(self, subject: Subject, *, by: str, reason: str, now: datetime) -> GrantList:
        """Revoke every unexpired grant of `subject`; an empty list when there was none."""
        by, reason = clean_change(by, reason)
        return await self._write(
            lambda conn: revoke_ids(conn, unexpired_ids(conn, subject, now), by, reason, now)
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
            rows = await self._run(lambda conn: conn.execute(sql, params).fetchall())
        except sqlite3.Error as exc:
            raise GrantStoreUnavailable(f"{self.path}: cannot read grants ({exc})") from None
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
            return await self._run(lambda conn: bg_sql.uses(conn, pending_only=pending_only))
        except sqlite3.Error as exc:
            raise GrantStoreUnavailable(
                f"{self.path}: cannot read break-glass uses ({exc})"
            ) from None

    async def sign_off_break_glass(
        self, grant_id: str, *, by: str, note: str, now: datetime
    ) -> BreakGlassUse:
        """Record a security officer's final sign-off of one break-glass use."""
        by, note = clean_signoff(by, note)
        return await self._write(lambda conn: bg_sql.sign_off(conn, grant_id, by, note, now))

    async def ping(self) -> bool:
        """True when the grants table can be read now, from the file at `path`."""
        if not self._same_file(time.time()):
            return False
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

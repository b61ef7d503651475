"""Every statement the SQLite grant store runs, and how rows and times are stored.

These functions run on the store's worker thread with its connection, inside the store's
transaction for changes (sqlite_store.py owns the threads, the cache and the error mapping;
sqlite_schema.py owns the tables and their triggers). Times are stored as fixed-width UTC text
(``2026-01-31T09:00:00.000000Z``) so that comparing them as text compares them as times.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from proxy.grants.errors import GrantStoreUnavailable
from proxy.grants.model import LAPSED_LOOKBACK, Grant, utc
from proxy.grants.store import (
    GRANT_COLUMNS,
    GrantList,
    already_revoked,
    check_list_filters,
    no_unexpired_grant,
    unknown_grant,
)
from proxy.identity.subject import Subject

if TYPE_CHECKING:
    import sqlite3
    from datetime import timedelta

__all__ = [
    "db_time",
    "grant_from_row",
    "insert_grant",
    "list_query",
    "live_grants",
    "py_time",
    "revoke_ids",
    "revoke_targets",
    "unexpired_ids",
]

_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def db_time(moment: datetime) -> str:
    """`moment` as the store writes times: fixed-width UTC text, sortable as text."""
    return utc(moment).strftime(_TIME)


def py_time(text: str | None) -> datetime | None:
    """A stored time back as an aware UTC datetime (None stays None)."""
    return None if text is None else datetime.strptime(text, _TIME).replace(tzinfo=UTC)


def grant_from_row(row: tuple[Any, ...]) -> Grant:
    """The Grant a row of GRANT_COLUMNS describes."""
    fields = None if row[4] is None else frozenset(json.loads(row[4]))
    not_before, expires_at, created_at = py_time(row[5]), py_time(row[6]), py_time(row[10])
    if not_before is None or expires_at is None or created_at is None:  # pragma: no cover
        raise GrantStoreUnavailable("grant row with a missing time (NOT NULL violated)")
    return Grant(
        id=row[0],
        subject=Subject(row[1], row[2]),
        practice=row[3],
        field_classes=fields,
        not_before=not_before,
        expires_at=expires_at,
        revoked_at=py_time(row[7]),
        created_by=row[8],
        reason=row[9],
        created_at=created_at,
        revoked_by=row[11],
        revoke_reason=row[12],
    )


# ---- request path ---------------------------------------------------------------------------


def live_grants(conn: sqlite3.Connection, subject: Subject, now: datetime) -> tuple[Grant, ...]:
    """`subject`'s unrevoked, unexpired grants, plus those lapsed within LAPSED_LOOKBACK."""
    rows = conn.execute(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE issuer = ? AND sub = ? "  # noqa: S608 - constant
        "AND ((revoked_at IS NULL AND expires_at > ?) "
        "OR COALESCE(revoked_at, expires_at) > ?)",  # recently lapsed: for Access.lapsed
        (subject.issuer, subject.sub, db_time(now), db_time(now - LAPSED_LOOKBACK)),
    ).fetchall()
    return tuple(grant_from_row(row) for row in rows)


# ---- changes (inside the store's BEGIN IMMEDIATE) --------------------------------------------


def insert_grant(conn: sqlite3.Connection, grant: Grant) -> Grant:
    """Insert `grant` and its "add" event."""
    fields = None if grant.field_classes is None else json.dumps(sorted(grant.field_classes))
    conn.execute(
        "INSERT INTO grants (id, issuer, sub, practice, field_classes, not_before, "
        "expires_at, created_at, created_by, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            grant.id,
            grant.subject.issuer,
            grant.subject.sub,
            grant.practice,
            fields,
            db_time(grant.not_before),
            db_time(grant.expires_at),
            db_time(grant.created_at),
            grant.created_by,
            grant.reason,
        ),
    )
    _event(
        conn,
        grant.id,
        action="add",
        at=grant.created_at,
        by=grant.created_by,
        reason=grant.reason,
    )
    return grant


def _event(
    conn: sqlite3.Connection, grant_id: str, *, action: str, at: datetime, by: str, reason: str
) -> None:
    conn.execute(
        "INSERT INTO grant_events (grant_id, action, at, by, reason) VALUES (?,?,?,?,?)",
        (grant_id, action, db_time(at), by, reason),
    )


def revoke_targets(
    conn: sqlite3.Connection,
    grant_id: str | None,
    subject: Subject | None,
    practice: str | None,
    now: datetime,
) -> list[str]:
    """The ids a revoke acts on; GrantNotFound when there is nothing to revoke."""
    if grant_id is not None:
        row = conn.execute(
            "SELECT revoked_at, revoked_by FROM grants WHERE id = ?", (grant_id,)
        ).fetchone()
        if row is None:
            raise unknown_grant(grant_id)
        if row[0] is not None:
            raise already_revoked(grant_id, row[0], row[1])
        return [grant_id]
    assert subject is not None  # noqa: S101 - check_revoke_target ran first; narrows for mypy
    ids = conn.execute(
        "SELECT id FROM grants WHERE issuer = ? AND sub = ? AND practice = ? "
        "AND revoked_at IS NULL AND expires_at > ?",
        (subject.issuer, subject.sub, practice, db_time(now)),
    ).fetchall()
    if not ids:
        raise no_unexpired_grant(subject, practice)
    return [i[0] for i in ids]


def unexpired_ids(conn: sqlite3.Connection, subject: Subject, now: datetime) -> list[str]:
    """The ids of every unrevoked, unexpired grant of `subject`, in any practice."""
    ids = conn.execute(
        "SELECT id FROM grants WHERE issuer = ? AND sub = ? "
        "AND revoked_at IS NULL AND expires_at > ?",
        (subject.issuer, subject.sub, db_time(now)),
    ).fetchall()
    return [i[0] for i in ids]


def revoke_ids(
    conn: sqlite3.Connection, ids: list[str], by: str, reason: str, now: datetime
) -> GrantList:
    """Revoke each grant in `ids` (with a "revoke" event); return them as now stored."""
    revoked = []
    for grant_id in ids:
        conn.execute(
            "UPDATE grants SET revoked_at = ?, revoked_by = ?, revoke_reason = ? "
            "WHERE id = ? AND revoked_at IS NULL",
            (db_time(now), by, reason, grant_id),
        )
        _event(conn, grant_id, action="revoke", at=now, by=by, reason=reason)
        row = conn.execute(
            f"SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?",  # noqa: S608 - constant columns
            (grant_id,),
        ).fetchone()
        revoked.append(grant_from_row(row))
    return revoked


# ---- listing --------------------------------------------------------------------------------


def list_query(
    *,
    practice: str | None,
    subject: Subject | None,
    active_at: datetime | None,
    expiring_within: timedelta | None,
) -> tuple[str, list[str]]:
    """The SELECT (and its parameters) for a listing: grants matching every filter, oldest first."""
    check_list_filters(active_at, expiring_within)
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
        params += [db_time(active_at)] * 2
        if expiring_within is not None:
            clauses.append("expires_at <= ?")
            params.append(db_time(active_at + expiring_within))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {GRANT_COLUMNS} FROM grants{where} ORDER BY created_at, id"  # noqa: S608 - fixed fragments only
    return sql, params

"""Every statement the PostgreSQL grant store runs, and how a row becomes a Grant.

These functions take a connection the store has acquired from its pool (inside the store's
transaction for changes); postgres_store.py owns the pool, the timeouts, the cache and the error
mapping, and postgres_schema.py the tables and their triggers. Changes lock the rows they revoke
(`FOR UPDATE`), so two concurrent revokes of one grant cannot both record it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    from datetime import datetime, timedelta

    from asyncpg import Connection, Record

__all__ = [
    "grant_from_row",
    "insert_grant",
    "list_query",
    "live_grants",
    "revoke_matching",
    "revoke_unexpired",
]


def grant_from_row(row: Record) -> Grant:
    """The Grant a row of GRANT_COLUMNS describes."""
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


# ---- request path ---------------------------------------------------------------------------


async def live_grants(conn: Connection, subject: Subject, now: datetime) -> tuple[Grant, ...]:
    """`subject`'s unrevoked, unexpired grants, plus those lapsed within LAPSED_LOOKBACK."""
    rows = await conn.fetch(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE issuer = $1 AND sub = $2 "  # noqa: S608
        "AND ((revoked_at IS NULL AND expires_at > $3) "
        "OR COALESCE(revoked_at, expires_at) > $4)",  # recently lapsed: for Access.lapsed
        subject.issuer,
        subject.sub,
        utc(now),
        utc(now) - LAPSED_LOOKBACK,
    )
    return tuple(grant_from_row(row) for row in rows)


# ---- changes (inside the store's transaction) ------------------------------------------------


async def insert_grant(conn: Connection, grant: Grant) -> Grant:
    """Insert `grant` and its "add" event."""
    fields = None if grant.field_classes is None else sorted(grant.field_classes)
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
    await _events(
        conn,
        [grant.id],
        "add",
        at=grant.created_at,
        by=grant.created_by,
        reason=grant.reason,
    )
    return grant


async def _events(
    conn: Connection, ids: list[str], action: str, *, at: datetime, by: str, reason: str
) -> None:
    await conn.executemany(
        "INSERT INTO grant_events (grant_id, action, at, by, reason) VALUES ($1,$2,$3,$4,$5)",
        [(grant_id, action, at, by, reason) for grant_id in ids],
    )


async def revoke_matching(
    conn: Connection,
    grant_id: str | None,
    subject: Subject | None,
    practice: str | None,
    *,
    by: str,
    reason: str,
    now: datetime,
) -> GrantList:
    """Revoke grant `grant_id`, or `subject`'s unexpired grants at `practice` (or GrantNotFound)."""
    if grant_id is not None:
        row = await conn.fetchrow(
            "SELECT revoked_at, revoked_by FROM grants WHERE id = $1 FOR UPDATE", grant_id
        )
        if row is None:
            raise unknown_grant(grant_id)
        if row["revoked_at"] is not None:
            at = f"{utc(row['revoked_at']):%Y-%m-%dT%H:%M:%SZ}"
            raise already_revoked(grant_id, at, row["revoked_by"])
        return await _revoke_ids(conn, [grant_id], by, reason, now)
    assert subject is not None  # noqa: S101 - check_revoke_target ran first; narrows for mypy
    ids = await conn.fetch(
        "SELECT id FROM grants WHERE issuer = $1 AND sub = $2 AND practice = $3 "
        "AND revoked_at IS NULL AND expires_at > $4 FOR UPDATE",
        subject.issuer,
        subject.sub,
        practice,
        utc(now),
    )
    if not ids:
        raise no_unexpired_grant(subject, practice)
    return await _revoke_ids(conn, [r["id"] for r in ids], by, reason, now)


async def revoke_unexpired(
    conn: Connection, subject: Subject, *, by: str, reason: str, now: datetime
) -> GrantList:
    """Revoke every unrevoked, unexpired grant of `subject`, in any practice."""
    ids = await conn.fetch(
        "SELECT id FROM grants WHERE issuer = $1 AND sub = $2 "
        "AND revoked_at IS NULL AND expires_at > $3 FOR UPDATE",
        subject.issuer,
        subject.sub,
        utc(now),
    )
    return await _revoke_ids(conn, [r["id"] for r in ids], by, reason, now)


async def _revoke_ids(
    conn: Connection, ids: list[str], by: str, reason: str, now: datetime
) -> GrantList:
    if not ids:
        return []
    rows = await conn.fetch(
        "UPDATE grants SET revoked_at = $2, revoked_by = $3, revoke_reason = $4 "  # noqa: S608
        f"WHERE id = ANY($1) AND revoked_at IS NULL RETURNING {GRANT_COLUMNS}",
        ids,
        utc(now),
        by,
        reason,
    )
    await _events(conn, [row["id"] for row in rows], "revoke", at=utc(now), by=by, reason=reason)
    return sorted((grant_from_row(row) for row in rows), key=lambda g: (g.created_at, g.id))


# ---- listing --------------------------------------------------------------------------------


def list_query(
    *,
    practice: str | None,
    subject: Subject | None,
    active_at: datetime | None,
    expiring_within: timedelta | None,
) -> tuple[str, list[object]]:
    """The SELECT (and its parameters) for a listing: grants matching every filter, oldest first."""
    check_list_filters(active_at, expiring_within)
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
            clauses.append(f"expires_at <= {param(utc(active_at) + expiring_within)}")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {GRANT_COLUMNS} FROM grants{where} ORDER BY created_at, id"  # noqa: S608 - fixed fragments only
    return sql, params

"""The PostgreSQL statements of break-glass: open (within the daily limit), list, sign off.

They run inside the PostgreSQL store's transaction. Opening takes a transaction-scoped advisory
lock on the person (`hashtextextended` of issuer|sub), so two replicas handling one person's
emergency requests at the same moment cannot both slip under `max_per_day`. The new grant is an
ordinary `grants` row: its insert trigger NOTIFYs every replica, as for any other grant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.grants.break_glass_model import (
    BREAK_GLASS_PREFIX,
    LIMIT_WINDOW,
    BreakGlassUse,
    Opened,
    SignOff,
    already_signed_off,
    is_break_glass_id,
    not_break_glass,
    unknown_use,
)
from proxy.grants.model import utc
from proxy.grants.postgres_queries import grant_from_row, insert_grant
from proxy.grants.store import GRANT_COLUMNS

if TYPE_CHECKING:
    from datetime import datetime

    from asyncpg import Connection, Record

    from proxy.grants.model import Grant
    from proxy.identity.subject import Subject

__all__ = ["open_break_glass", "recent_break_glass", "sign_off", "uses"]

_IS_BG = f"id LIKE '{BREAK_GLASS_PREFIX}%'"
_COLUMNS = ", ".join(f"g.{name.strip()}" for name in GRANT_COLUMNS.split(","))
#: Second argument of hashtextextended: keeps these locks apart from other advisory locks.
_LOCK_SEED = 0x4247  # "BG"


async def recent_break_glass(
    conn: Connection, subject: Subject, now: datetime
) -> tuple[int, datetime | None]:
    """How many break-glass grants `subject` opened in the last 24 hours, and the oldest's time."""
    row = await conn.fetchrow(
        f"SELECT count(*) AS n, min(created_at) AS oldest FROM grants "  # noqa: S608
        f"WHERE issuer = $1 AND sub = $2 AND {_IS_BG} AND created_at > $3",
        subject.issuer,
        subject.sub,
        utc(now) - LIMIT_WINDOW,
    )
    oldest = row["oldest"]
    return int(row["n"]), None if oldest is None else utc(oldest)


async def open_break_glass(
    conn: Connection, grant: Grant, now: datetime, max_per_day: int
) -> Opened | tuple[int, datetime | None]:
    """Reuse `grant.subject`'s active break-glass grant at its practice, or insert `grant`.

    Returns the (count, oldest) of the last 24 hours instead when inserting would exceed
    `max_per_day`; the caller turns that into the refusal.
    """
    subject = grant.subject
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1, $2))",
        f"{subject.issuer}|{subject.sub}",
        _LOCK_SEED,
    )
    row = await conn.fetchrow(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE issuer = $1 AND sub = $2 "  # noqa: S608
        f"AND practice = $3 AND {_IS_BG} AND revoked_at IS NULL AND not_before <= $4 "
        "AND expires_at > $4 ORDER BY expires_at DESC LIMIT 1",
        subject.issuer,
        subject.sub,
        grant.practice,
        utc(now),
    )
    if row is not None:
        return Opened(grant_from_row(row), new=False)
    count, oldest = await recent_break_glass(conn, subject, now)
    if count >= max_per_day:
        return count, oldest
    return Opened(await insert_grant(conn, grant), new=True)


def _use(row: Record) -> BreakGlassUse:
    at = row["signed_at"]
    signoff = None if at is None else SignOff(utc(at), row["signed_by"], row["note"])
    return BreakGlassUse(grant_from_row(row), signoff)


_SELECT_USES = (
    f"SELECT {_COLUMNS}, s.at AS signed_at, s.by AS signed_by, s.note FROM grants g "  # noqa: S608
    "LEFT JOIN break_glass_signoffs s ON s.grant_id = g.id"
)


async def uses(conn: Connection, *, pending_only: bool) -> list[BreakGlassUse]:
    """Every break-glass use (or those awaiting sign-off), oldest first."""
    pending = " AND s.grant_id IS NULL" if pending_only else ""
    rows = await conn.fetch(f"{_SELECT_USES} WHERE g.{_IS_BG}{pending} ORDER BY g.created_at, g.id")
    return [_use(row) for row in rows]


async def sign_off(
    conn: Connection, grant_id: str, by: str, note: str, now: datetime
) -> BreakGlassUse:
    """Record the sign-off of use `grant_id`; GrantNotFound/GrantError when it cannot be."""
    row = await conn.fetchrow(f"{_SELECT_USES} WHERE g.id = $1 FOR UPDATE OF g", grant_id)
    if row is None:
        raise unknown_use(grant_id)
    if not is_break_glass_id(grant_id):
        raise not_break_glass(grant_id)
    if row["signed_at"] is not None:
        at = f"{utc(row['signed_at']):%Y-%m-%dT%H:%M:%SZ}"
        raise already_signed_off(grant_id, at, row["signed_by"])
    await conn.execute(
        "INSERT INTO break_glass_signoffs (grant_id, at, by, note) VALUES ($1,$2,$3,$4)",
        grant_id,
        utc(now),
        by,
        note,
    )
    return BreakGlassUse(grant_from_row(row), SignOff(utc(now), by, note))

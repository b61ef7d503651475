"""The SQLite statements of break-glass: open (within the daily limit), list, sign off.

They run on the SQLite store's worker thread inside its `BEGIN IMMEDIATE` transaction, which
serialises every writer on the file (all proxy processes and `phi-grants`): two emergency
requests of one person at the same moment cannot both slip under `max_per_day`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from proxy.grants.sqlite_queries import db_time, grant_from_row, insert_grant, py_time
from proxy.grants.store import GRANT_COLUMNS

if TYPE_CHECKING:
    import sqlite3
    from datetime import datetime

    from proxy.grants.model import Grant
    from proxy.identity.subject import Subject

__all__ = ["open_break_glass", "recent_break_glass", "sign_off", "uses"]

_IS_BG = f"id LIKE '{BREAK_GLASS_PREFIX}%'"
_COLUMNS = ", ".join(f"g.{name.strip()}" for name in GRANT_COLUMNS.split(","))


def recent_break_glass(
    conn: sqlite3.Connection, subject: Subject, now: datetime
) -> tuple[int, datetime | None]:
    """How many break-glass grants `subject` opened in the last 24 hours, and the oldest's time."""
    count, oldest = conn.execute(
        f"SELECT count(*), min(created_at) FROM grants WHERE issuer = ? AND sub = ? "  # noqa: S608
        f"AND {_IS_BG} AND created_at > ?",
        (subject.issuer, subject.sub, db_time(now - LIMIT_WINDOW)),
    ).fetchone()
    return int(count), py_time(oldest)


def open_break_glass(
    conn: sqlite3.Connection, grant: Grant, now: datetime, max_per_day: int
) -> Opened | tuple[int, datetime | None]:
    """Reuse `grant.subject`'s active break-glass grant at its practice, or insert `grant`.

    Returns the (count, oldest) of the last 24 hours instead when inserting would exceed
    `max_per_day`; the caller turns that into the refusal.
    """
    row = conn.execute(
        f"SELECT {GRANT_COLUMNS} FROM grants WHERE issuer = ? AND sub = ? AND practice = ? "  # noqa: S608
        f"AND {_IS_BG} AND revoked_at IS NULL AND not_before <= ? AND expires_at > ? "
        "ORDER BY expires_at DESC LIMIT 1",
        (
            grant.subject.issuer,
            grant.subject.sub,
            grant.practice,
            db_time(now),
            db_time(now),
        ),
    ).fetchone()
    if row is not None:
        return Opened(grant_from_row(row), new=False)
    count, oldest = recent_break_glass(conn, grant.subject, now)
    if count >= max_per_day:
        return count, oldest
    return Opened(insert_grant(conn, grant), new=True)


def _use(row: tuple[Any, ...]) -> BreakGlassUse:
    grant = grant_from_row(row[:13])
    at = py_time(row[13])
    signoff = None if at is None else SignOff(at, row[14], row[15])
    return BreakGlassUse(grant, signoff)


def uses(conn: sqlite3.Connection, *, pending_only: bool) -> list[BreakGlassUse]:
    """Every break-glass use (or those awaiting sign-off), oldest first."""
    pending = " AND s.grant_id IS NULL" if pending_only else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS}, s.at, s.by, s.note FROM grants g "  # noqa: S608 - fixed fragments
        "LEFT JOIN break_glass_signoffs s ON s.grant_id = g.id "
        f"WHERE g.{_IS_BG}{pending} ORDER BY g.created_at, g.id"
    ).fetchall()
    return [_use(row) for row in rows]


def sign_off(
    conn: sqlite3.Connection, grant_id: str, by: str, note: str, now: datetime
) -> BreakGlassUse:
    """Record the sign-off of use `grant_id`; GrantNotFound/GrantError when it cannot be."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, s.at, s.by, s.note FROM grants g "  # noqa: S608 - fixed fragments
        "LEFT JOIN break_glass_signoffs s ON s.grant_id = g.id WHERE g.id = ?",
        (grant_id,),
    ).fetchone()
    if row is None:
        raise unknown_use(grant_id)
    if not is_break_glass_id(grant_id):
        raise not_break_glass(grant_id)
    if row[13] is not None:
        raise already_signed_off(grant_id, row[13], row[14])
    conn.execute(
        "INSERT INTO break_glass_signoffs (grant_id, at, by, note) VALUES (?,?,?,?)",
        (grant_id, db_time(now), by, note),
    )
    return BreakGlassUse(grant_from_row(row[:13]), SignOff(now, by, note))

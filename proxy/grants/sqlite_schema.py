"""The SQLite grant database schema and its versioned migrations.

The schema version lives in `PRAGMA user_version`; `migrate` applies missing steps inside one
`BEGIN IMMEDIATE` transaction, so several processes starting at once migrate exactly once. A
database from a newer phi-proxy, or a file that is not a grant database at all, is refused rather
than guessed at. Triggers make history append-only: a revoked grant cannot be un-revoked, grants
and events cannot be deleted, and (since version 2) an existing row cannot be overwritten by an
INSERT OR REPLACE / REPLACE / UPSERT on its key or its rowid: REPLACE's implicit delete fires no
DELETE trigger and an INSERT fires no UPDATE trigger, so those paths need their own triggers.
Triggers guard against statements, not against someone who can rewrite the file (DROP TRIGGER);
the file's 0600 mode is what keeps others out.
"""

from __future__ import annotations

import sqlite3
import time

from proxy.grants.errors import GrantStoreUnavailable

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "migrate"]

APPLICATION_ID = 0x50484947  # "PHIG": marks the file as a phi-proxy grant database

_V1 = (
    """CREATE TABLE grants (
        id            TEXT PRIMARY KEY,
        issuer        TEXT NOT NULL,
        sub           TEXT NOT NULL,
        practice      TEXT NOT NULL,
        field_classes TEXT,              -- JSON array, sorted; NULL means every field class
        not_before    TEXT NOT NULL,     -- times: UTC, 'YYYY-MM-DDTHH:MM:SS.ffffffZ' (sortable)
        expires_at    TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        created_by    TEXT NOT NULL CHECK (length(created_by) > 0),
        reason        TEXT NOT NULL CHECK (length(reason) > 0),
        revoked_at    TEXT,
        revoked_by    TEXT,
        revoke_reason TEXT,
        CHECK (expires_at > not_before),
        CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
    ) STRICT""",
    """CREATE INDEX grants_live_by_subject ON grants (issuer, sub, expires_at)
        WHERE revoked_at IS NULL""",
    "CREATE INDEX grants_by_practice ON grants (practice, expires_at)",
    """CREATE TABLE grant_events (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        grant_id TEXT NOT NULL REFERENCES grants (id),
        action   TEXT NOT NULL CHECK (action IN ('add', 'revoke')),
        at       TEXT NOT NULL,
        by       TEXT NOT NULL,
        reason   TEXT NOT NULL
    ) STRICT""",
    """CREATE TRIGGER grants_no_delete BEFORE DELETE ON grants
        BEGIN SELECT RAISE(ABORT, 'grants are never deleted; revoke instead'); END""",
    """CREATE TRIGGER grants_revocation_is_final BEFORE UPDATE ON grants
        WHEN OLD.revoked_at IS NOT NULL
        BEGIN SELECT RAISE(ABORT, 'a revoked grant cannot be changed'); END""",
    """CREATE TRIGGER grants_scope_is_fixed BEFORE UPDATE
        OF id, issuer, sub, practice, field_classes, not_before, expires_at, created_at,
           created_by, reason ON grants
        BEGIN SELECT RAISE(ABORT, 'a grant cannot be widened or extended; add a new one'); END""",
    """CREATE TRIGGER grant_events_append_only_u BEFORE UPDATE ON grant_events
        BEGIN SELECT RAISE(ABORT, 'grant history is append-only'); END""",
    """CREATE TRIGGER grant_events_append_only_d BEFORE DELETE ON grant_events
        BEGIN SELECT RAISE(ABORT, 'grant history is append-only'); END""",
)

# Version 2: no INSERT may land on an existing row. A BEFORE INSERT trigger runs before
# constraint checks, so the old row is still there to be found, whatever the statement's
# conflict clause (OR REPLACE, OR IGNORE, ON CONFLICT DO UPDATE / DO NOTHING). The rowid counts as
# a key: `INSERT OR REPLACE INTO grants (rowid, id, ...)` with a new id would otherwise replace
# the row holding that rowid. In a BEFORE INSERT trigger NEW.rowid is -1 when the statement does
# not set it, so the rowid is only looked up when positive, and the AFTER INSERT triggers refuse
# rows whose rowid is not positive (SQLite never assigns one) so that lookup cannot be dodged.
# UPDATE OR REPLACE moving a grant onto another grant's rowid is refused too (grant_events
# already refuses every UPDATE).
_V2 = (
    """CREATE TRIGGER grants_no_overwrite BEFORE INSERT ON grants
        WHEN EXISTS (SELECT 1 FROM grants WHERE id = NEW.id)
          OR (NEW.rowid > 0 AND EXISTS (SELECT 1 FROM grants WHERE rowid = NEW.rowid))
        BEGIN SELECT RAISE(ABORT,
            'a grant cannot be replaced or overwritten; revoke it and add a new one'); END""",
    """CREATE TRIGGER grants_rowid_positive AFTER INSERT ON grants
        WHEN NEW.rowid < 1
        BEGIN SELECT RAISE(ABORT, 'grants are numbered by SQLite; do not set rowid'); END""",
    """CREATE TRIGGER grants_rowid_is_fixed BEFORE UPDATE ON grants
        WHEN NEW.rowid IS NOT OLD.rowid
        BEGIN SELECT RAISE(ABORT, 'a grant cannot be moved onto another row'); END""",
    """CREATE TRIGGER grant_events_no_overwrite BEFORE INSERT ON grant_events
        WHEN NEW.seq > 0 AND EXISTS (SELECT 1 FROM grant_events WHERE seq = NEW.seq)
        BEGIN SELECT RAISE(ABORT,
            'grant history is append-only; an event cannot be replaced or overwritten'); END""",
    """CREATE TRIGGER grant_events_seq_positive AFTER INSERT ON grant_events
        WHEN NEW.seq < 1
        BEGIN SELECT RAISE(ABORT, 'grant history is append-only; do not set seq'); END""",
)

# Version 3: break-glass sign-offs (one final row per `bg_` grant), and an index to count a
# person's recent break-glass grants (revoked ones included) for break_glass.max_per_day.
_V3 = (
    """CREATE TABLE break_glass_signoffs (
        grant_id TEXT PRIMARY KEY REFERENCES grants (id),
        at       TEXT NOT NULL,
        by       TEXT NOT NULL CHECK (length(by) > 0),
        note     TEXT NOT NULL CHECK (length(note) > 0)
    ) STRICT""",
    "CREATE INDEX grants_by_subject_created ON grants (issuer, sub, created_at)",
    """CREATE TRIGGER break_glass_signoffs_final_u BEFORE UPDATE ON break_glass_signoffs
        BEGIN SELECT RAISE(ABORT, 'a break-glass sign-off is final'); END""",
    """CREATE TRIGGER break_glass_signoffs_final_d BEFORE DELETE ON break_glass_signoffs
        BEGIN SELECT RAISE(ABORT, 'a break-glass sign-off is final'); END""",
    """CREATE TRIGGER break_glass_signoffs_no_overwrite BEFORE INSERT ON break_glass_signoffs
        WHEN EXISTS (SELECT 1 FROM break_glass_signoffs WHERE grant_id = NEW.grant_id)
        BEGIN SELECT RAISE(ABORT, 'a break-glass sign-off is final'); END""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, where: str, wait: float = 5.0) -> int:
    """Bring the database behind `conn` (autocommit mode) to SCHEMA_VERSION; return it.

    `wait` bounds how long a lock held by another process may delay the WAL switch.

    Raises:
        GrantStoreUnavailable: the file is foreign, newer than this code, or cannot be written.
        sqlite3.Error: the database stayed locked, or is unreadable.
    """
    _switch_to_wal(conn, where, deadline=time.monotonic() + wait)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _check_compatible(conn, where)
        for steps in MIGRATIONS[version:]:
            for statement in steps:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID:d}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION


def _switch_to_wal(conn: sqlite3.Connection, where: str, *, deadline: float) -> None:
    """Put the file in WAL mode, retrying while another process holds a conflicting lock.

    Changing the journal mode needs an exclusive lock, and SQLite answers "database is locked"
    at once, without its busy handler, when that would deadlock with another connection's
    pending write (several processes creating the same new file). So wait here instead.
    """
    pause = 0.005
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)
    if str(mode).lower() != "wal":
        raise GrantStoreUnavailable(f"{where}: cannot switch the grant database to WAL mode")


def _check_compatible(conn: sqlite3.Connection, where: str) -> int:
    """Return the file's schema version; refuse foreign files and newer schemas."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and tables):
        raise GrantStoreUnavailable(
            f"{where}: this file is not a phi-proxy grant database; "
            "point grants.store at a new or existing grant database"
        )
    if version > SCHEMA_VERSION:
        raise GrantStoreUnavailable(
            f"{where}: the grant database has schema version {version}, newer than this "
            f"phi-proxy understands ({SCHEMA_VERSION}); upgrade phi-proxy on this host"
        )
    return version

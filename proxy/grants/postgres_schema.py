"""The PostgreSQL grant schema, its versioned migrations, and the change-notification trigger.

`migrate` runs in one transaction holding a transaction-scoped advisory lock, so any number of
replicas starting at once migrate exactly once: the first takes the lock and migrates, the others
wait for it and then find nothing left to do. A schema from a newer phi-proxy, or a schema whose
`grants` table phi-proxy did not create, is refused rather than guessed at.

The triggers are the same rules as the SQLite store's (grants are never deleted, a revoked grant
stays revoked, a grant's scope is fixed, history is append-only) plus one more: every inserted or
updated grant row sends ``NOTIFY phi_grants`` in the same transaction, whoever made the change
(phi-proxy, `phi-grants`, or a DBA in psql), so no change path can skip the revocation push. The
payload is ``<schema>:<sha256 hex of "issuer|sub">``: bounded in size (NOTIFY payloads are capped
at 8000 bytes) and it does not broadcast people's identities to every listener.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from proxy.grants.errors import GrantStoreUnavailable

if TYPE_CHECKING:
    from asyncpg import Connection

    from proxy.identity.subject import Subject

__all__ = [
    "ADVISORY_LOCK_KEY",
    "CHANNEL",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "migrate",
    "subject_digest",
]

#: The NOTIFY channel every grant change is announced on.
CHANNEL = "phi_grants"
#: pg_advisory_xact_lock key serialising migrations ("PHIGRANT" as a 64-bit integer).
ADVISORY_LOCK_KEY = 0x5048_4947_5241_4E54

_V1 = (
    """CREATE TABLE grants (
        id            text PRIMARY KEY,
        issuer        text NOT NULL,
        sub           text NOT NULL,
        practice      text NOT NULL,
        field_classes text[],            -- sorted; NULL means every field class
        not_before    timestamptz NOT NULL,
        expires_at    timestamptz NOT NULL,
        created_at    timestamptz NOT NULL,
        created_by    text NOT NULL CHECK (length(created_by) > 0),
        reason        text NOT NULL CHECK (length(reason) > 0),
        revoked_at    timestamptz,
        revoked_by    text,
        revoke_reason text,
        CHECK (expires_at > not_before),
        CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
    )""",
    "CREATE INDEX grants_by_subject ON grants (issuer, sub, expires_at)",
    "CREATE INDEX grants_by_practice ON grants (practice, expires_at)",
    """CREATE TABLE grant_events (
        seq      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        grant_id text NOT NULL REFERENCES grants (id),
        action   text NOT NULL CHECK (action IN ('add', 'revoke')),
        at       timestamptz NOT NULL,
        by       text NOT NULL,
        reason   text NOT NULL
    )""",
    """CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
        END $$""",
    """CREATE TRIGGER grants_no_delete BEFORE DELETE ON grants FOR EACH ROW
        EXECUTE FUNCTION refuse('grants are never deleted; revoke instead')""",
    """CREATE TRIGGER grants_no_truncate BEFORE TRUNCATE ON grants FOR EACH STATEMENT
        EXECUTE FUNCTION refuse('grants are never deleted; revoke instead')""",
    """CREATE TRIGGER grants_revocation_is_final BEFORE UPDATE ON grants FOR EACH ROW
        WHEN (OLD.revoked_at IS NOT NULL)
        EXECUTE FUNCTION refuse('a revoked grant cannot be changed')""",
    """CREATE TRIGGER grants_scope_is_fixed BEFORE UPDATE ON grants FOR EACH ROW
        WHEN ((OLD.id, OLD.issuer, OLD.sub, OLD.practice, OLD.field_classes, OLD.not_before,
               OLD.expires_at, OLD.created_at, OLD.created_by, OLD.reason)
              IS DISTINCT FROM
              (NEW.id, NEW.issuer, NEW.sub, NEW.practice, NEW.field_classes, NEW.not_before,
               NEW.expires_at, NEW.created_at, NEW.created_by, NEW.reason))
        EXECUTE FUNCTION refuse('a grant cannot be widened or extended; add a new one')""",
    """CREATE TRIGGER grant_events_append_only BEFORE UPDATE OR DELETE ON grant_events
        FOR EACH ROW EXECUTE FUNCTION refuse('grant history is append-only')""",
    """CREATE TRIGGER grant_events_no_truncate BEFORE TRUNCATE ON grant_events
        FOR EACH STATEMENT EXECUTE FUNCTION refuse('grant history is append-only')""",
    f"""CREATE FUNCTION announce_grant_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', TG_TABLE_SCHEMA || ':' || encode(
                sha256(convert_to(NEW.issuer || '|' || NEW.sub, 'UTF8')), 'hex'));
            RETURN NULL;
        END $$""",
    """CREATE TRIGGER grants_announce AFTER INSERT OR UPDATE ON grants FOR EACH ROW
        EXECUTE FUNCTION announce_grant_change()""",
)

# Version 2: break-glass sign-offs (one final row per `bg_` grant; changes are refused), and an
# index to count a person's recent break-glass grants for break_glass.max_per_day.
_V2 = (
    """CREATE TABLE break_glass_signoffs (
        grant_id text PRIMARY KEY REFERENCES grants (id),
        at       timestamptz NOT NULL,
        by       text NOT NULL CHECK (length(by) > 0),
        note     text NOT NULL CHECK (length(note) > 0)
    )""",
    "CREATE INDEX grants_by_subject_created ON grants (issuer, sub, created_at)",
    """CREATE TRIGGER break_glass_signoffs_final BEFORE UPDATE OR DELETE ON break_glass_signoffs
        FOR EACH ROW EXECUTE FUNCTION refuse('a break-glass sign-off is final')""",
    """CREATE TRIGGER break_glass_signoffs_no_truncate BEFORE TRUNCATE ON break_glass_signoffs
        FOR EACH STATEMENT EXECUTE FUNCTION refuse('a break-glass sign-off is final')""",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2)
SCHEMA_VERSION = len(MIGRATIONS)

_VERSION_TABLE = "phi_grants_schema"


def subject_digest(subject: Subject) -> str:
    """The hex SHA-256 of ``issuer|sub``: what the trigger puts in a notification's payload."""
    return hashlib.sha256(f"{subject.issuer}|{subject.sub}".encode()).hexdigest()


async def migrate(conn: Connection, *, schema: str, where: str) -> int:
    """Bring `schema` (created if missing) to SCHEMA_VERSION on asyncpg connection `conn`.

    `schema` must already be validated as a plain identifier (GrantSettings does). The
    connection's search_path must be `schema`, so unqualified names land there.

    Raises:
        GrantStoreUnavailable: the schema is foreign or newer than this code.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        version = await _current_version(conn, schema, where)
        for steps in MIGRATIONS[version:]:
            for statement in steps:
                await conn.execute(statement)
        if version < SCHEMA_VERSION:
            await conn.execute(
                f"UPDATE {_VERSION_TABLE} SET version = $1",  # noqa: S608 - constant name
                SCHEMA_VERSION,
            )
    return SCHEMA_VERSION


async def _current_version(conn: Connection, schema: str, where: str) -> int:
    """The schema's version (creating the version table at 0); refuse foreign or newer schemas."""
    tables = {
        row[0]
        for row in await conn.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", schema
        )
    }
    if _VERSION_TABLE not in tables:
        if "grants" in tables or "grant_events" in tables:
            raise GrantStoreUnavailable(
                f"{where}: schema {schema!r} already has grant tables that phi-proxy did not "
                "create; point grants.pg_schema at a new or existing phi-proxy schema"
            )
        await conn.execute(
            f"CREATE TABLE {_VERSION_TABLE} (version integer NOT NULL, "
            "single boolean PRIMARY KEY DEFAULT true CHECK (single))"
        )
        await conn.execute(f"INSERT INTO {_VERSION_TABLE} (version) VALUES (0)")  # noqa: S608
        return 0
    version: int = await conn.fetchval(f"SELECT version FROM {_VERSION_TABLE}")  # noqa: S608
    if version > SCHEMA_VERSION:
        raise GrantStoreUnavailable(
            f"{where}: the grant schema {schema!r} has version {version}, newer than this "
            f"phi-proxy understands ({SCHEMA_VERSION}); upgrade phi-proxy on this host"
        )
    return version

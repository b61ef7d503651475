"""Validating the PostgreSQL settings shared by the grant store and the audit sink.

One rule set for every `postgresql://` URL in the config: a host and a database name are
required, and a password is refused (it would leak into logs, backups and process listings —
PGPASSWORD or ~/.pgpass carry it instead). Schema names are plain identifiers we can quote
safely into DDL.
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "check_postgres_url",
    "check_schema_name",
    "describe_postgres_url",
    "is_postgres_url",
    "refuse_password",
]

_PG_SCHEMES: Final = ("postgresql://", "postgres://")
_SCHEMA_NAME: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_EXAMPLE: Final = "postgresql://USER@HOST:5432/DBNAME"


def is_postgres_url(value: str) -> bool:
    """True when `value` names a PostgreSQL database (postgresql:// or postgres://)."""
    return value.startswith(_PG_SCHEMES)


def describe_postgres_url(value: str) -> str:
    """``postgresql://host:port/database``: safe for logs and errors (no user, no query)."""
    parts = urlsplit(value)
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{parts.hostname or 'localhost'}{port}{parts.path or '/'}"


#: Query parameters asyncpg reads as secrets (`?password=` works like `user:password@`).
_SECRET_QUERY_KEYS: Final = frozenset({"password", "sslpassword"})


def refuse_password(value: str, *, setting: str) -> None:
    """Raise ValueError if the URL `value` carries a password (`user:pw@` or `?password=`)."""
    parts = urlsplit(value)
    query_keys = {key.lower() for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if parts.password is not None or query_keys & _SECRET_QUERY_KEYS:
        raise ValueError(
            f"{setting} must not contain a password (it would leak into logs, backups and "
            "process listings); remove it and set PGPASSWORD or use a ~/.pgpass file"
        )


def check_postgres_url(value: str, *, setting: str) -> str:
    """Return `value` if it is a usable, password-free PostgreSQL URL; else raise ValueError.

    `setting` is the YAML path named in the message (e.g. "grants.store").
    """
    try:
        parts = urlsplit(value)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise ValueError(f"{setting} is not a valid PostgreSQL URL; write {_EXAMPLE}") from None
    if not is_postgres_url(value):
        raise ValueError(f"{setting} must be a postgresql:// URL, such as {_EXAMPLE}")
    refuse_password(value, setting=setting)
    if not parts.hostname or parts.path in ("", "/"):
        raise ValueError(f"{setting} needs a host and a database name: {_EXAMPLE}")
    return value


def check_schema_name(value: str, *, setting: str) -> str:
    """Return `value` if it is a safe schema identifier; else raise ValueError."""
    if not _SCHEMA_NAME.match(value) or value.startswith("pg_"):
        raise ValueError(
            f"{setting} must be 1-63 lower-case letters, digits or '_', starting with a letter "
            "or '_' and not with 'pg_'"
        )
    return value

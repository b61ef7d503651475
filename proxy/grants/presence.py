"""Is there a grant store where the config points? Asked without creating one.

Opening a store creates it (a first start must work), so every command that reads or revokes
asks first: an empty store created at a mistyped path or schema would look healthy — every
caller masked, `phi-grants list` "0 grant(s)", `review` "0 grants, no findings", `offboard`
"nothing to revoke" — while the real grants sit elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.errors import ConfigError
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    from pathlib import Path

    from proxy.grants.settings import GrantSettings

__all__ = ["describe_grant_store", "grant_store_exists", "require_grant_store"]


async def grant_store_exists(settings: GrantSettings) -> bool:
    """False only if the SQLite file is missing, or PostgreSQL answers without a grants table.

    An unreachable database counts as present: the store's own call then reports "cannot be
    read", which is the accurate message.
    """
    if not settings.is_postgres:
        return settings.sqlite_path.exists()
    import asyncpg  # noqa: PLC0415 - optional dependency, PostgreSQL stores only

    try:
        conn = await asyncpg.connect(settings.store, timeout=settings.timeout_seconds)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return True
    try:
        found = await conn.fetchval(
            "SELECT to_regclass(quote_ident($1) || '.grants')", settings.pg_schema
        )
    finally:
        await conn.close()
    return found is not None


def describe_grant_store(settings: GrantSettings) -> str:
    """Where the grants are, for a message: the SQLite path, or host/db and schema."""
    if settings.is_postgres:
        return f"{describe_postgres_url(settings.store)} schema {settings.pg_schema}"
    return str(settings.sqlite_path)


async def require_grant_store(settings: GrantSettings, config_path: Path) -> None:
    """Raise ConfigError if the grant database (SQLite file or PostgreSQL schema) is not there."""
    if await grant_store_exists(settings):
        return
    if settings.is_postgres:
        raise ConfigError(
            f"{describe_postgres_url(settings.store)}: schema {settings.pg_schema} holds no "
            f"grant store (grants.store / grants.pg_schema in {config_path}); check the config "
            "(`phi-grants add` creates the store on first use)"
        )
    raise ConfigError(
        f"{settings.sqlite_path}: no grant database there (grants.store in {config_path}); "
        "check the config, or run phi-grants on the host that holds the grants "
        "(`phi-grants add` creates the store on first use)"
    )

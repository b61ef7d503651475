"""Is there a grant store where the config points? Asked without creating one.

Opening a store creates it (a first start must work), so the read-only commands ask first:
an empty store created at a mistyped path or schema would look healthy — every caller masked,
`phi-grants review` "0 grants, no findings" — while the real grants sit elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.grants.settings import GrantSettings

__all__ = ["grant_store_exists"]


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

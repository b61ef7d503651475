"""`phi-grants review` wiring: settings and options in, the access review printed out.

The review only reads, the grants and the audit trail; it never creates or changes either.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from keys.errors import ConfigError
from proxy.grants.presence import grant_store_exists
from proxy.grants.review import build_review
from proxy.grants.review_model import ReviewOptions
from proxy.grants.review_render import render_json, render_text
from proxy.grants.usage import Usage, read_usage
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from pathlib import Path

    from proxy.grants.settings import GrantSettings
    from proxy.grants.store import GrantStore

__all__ = ["refuse_missing_grant_database", "review_grants"]


async def refuse_missing_grant_database(settings: GrantSettings, config_path: Path) -> None:
    """Raise ConfigError if the grant database (SQLite file or PostgreSQL schema) is not there.

    Opening the store would create an empty one — and an empty store reviews as "0 grants, no
    findings", exit 0: a mistyped path or schema must not read as a clean review.
    """
    if await grant_store_exists(settings):
        return
    if settings.is_postgres:
        raise ConfigError(
            f"{describe_postgres_url(settings.store)}: schema {settings.pg_schema} holds no "
            f"grant store (grants.store / grants.pg_schema in {config_path}); check the config"
        )
    raise ConfigError(
        f"{settings.sqlite_path}: no grant database there (grants.store in {config_path}); "
        "check the config, or run the review on the host that holds the grants"
    )


async def review_grants(
    args: argparse.Namespace,
    store: GrantStore,
    settings: GrantSettings,
    now: datetime,
    config_path: Path,
) -> int:
    """Print the access review; 1 when it has findings. Reads grants and the trail only."""
    grants = await store.list()  # all practices: several_practices looks at every one
    usage = (
        Usage("not_checked")
        if args.skip_usage
        else await asyncio.to_thread(read_usage, config_path, now=now)
    )
    store_name = (
        f"{describe_postgres_url(settings.store)} (schema {settings.pg_schema})"
        if settings.is_postgres
        else str(settings.sqlite_path)
    )
    options = ReviewOptions(
        now=now,
        max_ttl=settings.max_ttl,
        expiring_within=args.expiring_within,
        unused_for=args.unused_for,
        practice=args.practice,
        config=args.config,
        store=store_name,
    )
    review = build_review(grants, usage, options)
    print(render_json(review) if args.json else render_text(review))
    return 1 if review.finding_count else 0

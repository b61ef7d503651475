"""`phi-grants review` wiring: settings and options in, the access review printed out.

The review only reads, the grants and the audit trail; it never creates or changes either.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from proxy.audit.report import printable, printable_json
from proxy.grants.review import build_review
from proxy.grants.review_model import (
    DEFAULT_EXPIRING_WITHIN,
    DEFAULT_UNUSED_FOR,
    ReviewOptions,
)
from proxy.grants.review_render import render_json, render_text
from proxy.grants.usage import Usage, read_usage
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    import argparse
    from datetime import datetime, timedelta
    from pathlib import Path

    from proxy.grants.review_model import Review
    from proxy.grants.settings import GrantSettings
    from proxy.grants.store import GrantStore

__all__ = ["access_review", "review_grants"]


async def access_review(
    store: GrantStore,
    settings: GrantSettings,
    *,
    now: datetime,
    config_path: Path,
    practice: str | None = None,
    expiring_within: timedelta = DEFAULT_EXPIRING_WITHIN,
    unused_for: timedelta = DEFAULT_UNUSED_FOR,
    skip_usage: bool = False,
    config_label: str | None = None,
) -> Review:
    """The access review of every grant in effect; reads grants and the trail, changes nothing.

    Shared by `phi-grants review` and the admin API. `config_label` is the -c FILE repeated in
    the commands the findings suggest.
    """
    grants = await store.list()  # all practices: several_practices looks at every one
    usage = (
        Usage("not_checked")
        if skip_usage
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
        expiring_within=expiring_within,
        unused_for=unused_for,
        practice=practice,
        config=config_label,
        store=store_name,
    )
    return build_review(grants, usage, options)


async def review_grants(
    args: argparse.Namespace,
    store: GrantStore,
    settings: GrantSettings,
    now: datetime,
    config_path: Path,
) -> int:
    """Print the access review; 1 when it has findings. Reads grants and the trail only."""
    review = await access_review(
        store,
        settings,
        now=now,
        config_path=config_path,
        practice=args.practice,
        expiring_within=args.expiring_within,
        unused_for=args.unused_for,
        skip_usage=args.skip_usage,
        config_label=args.config,
    )
    # Grant fields (--by, reasons) and trail data are shown with visible escapes: no text in
    # them can move the terminal's cursor or rewrite the lines a reviewer reads.
    if args.json:
        print(printable_json(render_json(review)))
    else:
        print("\n".join(map(printable, render_text(review).split("\n"))))
    return 1 if review.finding_count else 0

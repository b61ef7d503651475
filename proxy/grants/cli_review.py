"""`phi-grants review` wiring: settings and options in, the access review printed out.

The review only reads, the grants and the audit trail; it never creates or changes either,
except `--acknowledge`, which records a security officer's sign-off of a break-glass use.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from keys.config_file import load_section
from proxy.audit.report import printable, printable_json
from proxy.grants.break_glass import acknowledge, record_signoff, with_break_glass
from proxy.grants.break_glass_settings import BreakGlassSettings
from proxy.grants.cli_arguments import UsageError
from proxy.grants.cli_changes import default_by
from proxy.grants.review import build_review
from proxy.grants.review_model import (
    DEFAULT_EXPIRING_WITHIN,
    DEFAULT_UNUSED_FOR,
    Finding,
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

__all__ = ["access_review", "check_signoff_arguments", "review_grants"]


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
    the commands the findings suggest. Break-glass uses awaiting sign-off are listed, and those
    older than `break_glass.signoff_within` are findings.
    """
    glass = load_section(config_path, "break_glass", BreakGlassSettings)
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
        signoff_within=glass.signoff_within,
    )
    review = await with_break_glass(build_review(grants, usage, options), store)
    return await asyncio.to_thread(_with_scim_groups, review, config_path)


def _with_scim_groups(review: Review, config_path: Path) -> Review:
    """`review` with the SCIM groups no scim.groups mapping names (none when SCIM is off).

    An unreadable SCIM directory is a finding: the review cannot say whose groups grant nothing.
    """
    import sqlite3  # noqa: PLC0415 - only with SCIM

    from proxy.scim.directory import unmapped_group_names  # noqa: PLC0415
    from proxy.scim.settings import ScimSettings  # noqa: PLC0415

    scim = load_section(config_path, "scim", ScimSettings)
    if not scim.enabled:
        return review
    try:
        unmapped = unmapped_group_names(scim.directory)
    except sqlite3.Error as exc:
        unreadable = Finding(
            "scim_directory_unreadable",
            "SCIM directory unreadable",
            f"scim.directory {scim.directory} cannot be read ({exc}), so the review cannot list "
            "the identity provider's groups that scim.groups does not map.",
            "Check the file's owner and mode (the proxy's user, 0600) and that it is SQLite.",
        )
        return dataclasses.replace(review, findings=(*review.findings, unreadable))
    return dataclasses.replace(review, scim_unmapped_groups=tuple(unmapped))


def check_signoff_arguments(args: argparse.Namespace) -> str:
    """Who signs off (--by or the invoking user); UsageError before any store is opened."""
    by: str | None = args.by or default_by()
    if not by:
        raise UsageError("cannot tell who you are: pass --by NAME")
    if not args.note:
        raise UsageError(
            "--acknowledge needs --note TEXT: what you checked and concluded (it is kept with "
            "the sign-off and in the audit trail)"
        )
    return by


async def _acknowledge(
    args: argparse.Namespace, store: GrantStore, now: datetime, config_path: Path
) -> int:
    """Sign off one break-glass use (final), print it, and audit the sign-off."""
    by = check_signoff_arguments(args)
    use = await acknowledge(store, args.acknowledge, by=by, note=args.note, now=now)
    grant = use.grant
    print(
        f"signed off break-glass use {grant.id} ({grant.subject} at {grant.practice}, opened "
        f"{grant.created_at:%Y-%m-%d %H:%M} UTC) by {by}"
    )
    record_signoff(config_path, use, now)
    return 0


async def review_grants(
    args: argparse.Namespace,
    store: GrantStore,
    settings: GrantSettings,
    now: datetime,
    config_path: Path,
) -> int:
    """Print the access review; 1 when it has findings. Reads grants and the trail only.

    With --acknowledge it signs off one break-glass use instead (the one change review makes).
    """
    if args.acknowledge is not None:
        return await _acknowledge(args, store, now, config_path)
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

"""`phi-grants list`, and the one-line and JSON forms of a grant that the commands print.

Times are printed in UTC to the second, so a line reads the same on every host.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from proxy.grants.changes import utc_text
from proxy.grants.durations import format_duration

if TYPE_CHECKING:
    import argparse
    from datetime import datetime

    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore

__all__ = ["grant_line", "list_grants", "utc_text"]


def _as_dict(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "subject": str(grant.subject),
        "practice": grant.practice,
        "fields": None if grant.field_classes is None else sorted(grant.field_classes),
        "not_before": utc_text(grant.not_before),
        "expires_at": utc_text(grant.expires_at),
        "created_at": utc_text(grant.created_at),
        "created_by": grant.created_by,
        "reason": grant.reason,
        "revoked_at": utc_text(grant.revoked_at),
        "revoked_by": grant.revoked_by,
        "revoke_reason": grant.revoke_reason,
    }


def grant_line(grant: Grant, now: datetime) -> str:
    """One line: id, person, practice, field classes and where the grant stands at `now`."""
    fields = "all fields" if grant.field_classes is None else ",".join(sorted(grant.field_classes))
    if grant.revoked_at is not None:
        state = f"revoked {utc_text(grant.revoked_at)} by {grant.revoked_by}"
    elif grant.expires_at <= now:
        state = f"expired {utc_text(grant.expires_at)}"
    elif grant.not_before > now:
        state = f"starts {utc_text(grant.not_before)}, expires {utc_text(grant.expires_at)}"
    else:
        left = format_duration(grant.expires_at - now)
        state = f"active until {utc_text(grant.expires_at)} ({left} left)"
    return f"{grant.id}  {grant.subject}  {grant.practice}  [{fields}]  {state}"


async def list_grants(args: argparse.Namespace, store: GrantStore, now: datetime) -> int:
    """Print the grants the filters select, as lines or one JSON document; always 0."""
    active_at = now if (args.active or args.expiring) else None
    grants = await store.list(
        practice=args.practice,
        subject=args.subject,
        active_at=active_at,
        expiring_within=args.expiring,
    )
    if args.json:
        print(json.dumps([_as_dict(g) for g in grants], indent=2))
    else:
        for grant in grants:
            print(grant_line(grant, now))
        print(f"{len(grants)} grant(s)")
    return 0

"""`phi-grants add`, `revoke` and `offboard`: every change names who made it and is audited.

The audit event holds ids, names and times only, never the free-text reason, which stays in the
grant history.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING

from proxy.grants.cli_arguments import UsageError
from proxy.grants.cli_listing import grant_line, utc_text
from proxy.grants.store import GrantRequest

if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from pathlib import Path

    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore

__all__ = ["change_grants"]


def _default_by() -> str | None:
    who = os.environ.get("SUDO_USER") or os.environ.get("USER")
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _audit(config_path: Path, action: str, by: str, grants: list[Grant], now: datetime) -> None:
    """Record the change in the audit trail (ids and names only, never the free-text reason)."""
    from proxy.audit.factory import record_change  # noqa: PLC0415 - only for changes

    if not grants:
        return
    record_change(
        config_path,
        "grant_change",
        action,
        actor=by,
        now=now,
        details={
            "grants": [
                {
                    "id": g.id,
                    "subject": str(g.subject),
                    "practice": g.practice,
                    "field_classes": None if g.field_classes is None else sorted(g.field_classes),
                    "not_before": utc_text(g.not_before),
                    "expires_at": utc_text(g.expires_at),
                }
                for g in grants
            ]
        },
    )


async def change_grants(
    args: argparse.Namespace, store: GrantStore, now: datetime, config_path: Path
) -> int:
    """Run add, revoke or offboard; print each grant it changed and audit the change."""
    by = args.by or _default_by()
    if not by:
        raise UsageError("cannot tell who you are: pass --by NAME")
    if args.command == "add":
        start = args.not_before or now
        request = GrantRequest(
            subject=args.subject,
            practice=args.practice,
            field_classes=args.fields,
            expires_at=start + args.ttl,
            not_before=args.not_before,
            created_by=by,
            reason=args.reason,
        )
        grant = await store.add(request, now=now)
        print(f"added {grant_line(grant, now)}")
        _audit(config_path, "add", by, [grant], now)
        return 0
    if args.command == "revoke":
        if args.subject is not None and not args.practice:
            raise UsageError("revoke --subject needs --practice (or use: phi-grants offboard)")
        revoked = await store.revoke(
            grant_id=args.grant_id,
            subject=args.subject,
            practice=args.practice,
            by=by,
            reason=args.reason,
            now=now,
        )
    else:
        revoked = await store.offboard(args.subject, by=by, reason=args.reason, now=now)
        if not revoked:
            print(f"{args.subject} held no unexpired grant; nothing to revoke")
    for grant in revoked:
        print(f"revoked {grant_line(grant, now)}")
    _audit(config_path, args.command, by, revoked, now)
    return 0

"""`phi-grants add`, `revoke` and `offboard`: every change names who made it and is audited.

The changes themselves (rules, refusals, the audit event) are `proxy.grants.changes`, which the
admin API calls too; this module reads the arguments and prints what changed.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING

from proxy.grants.changes import (
    add_grant,
    audit_change,
    change_details,
    offboard_subject,
    revoke_grants,
)
from proxy.grants.cli_arguments import UsageError
from proxy.grants.cli_listing import grant_line

if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from pathlib import Path

    from proxy.grants.store import GrantStore

__all__ = ["change_details", "change_grants", "default_by"]


def default_by() -> str | None:
    """Who runs the command: $SUDO_USER, $USER, or the login name (None if unknown)."""
    who = os.environ.get("SUDO_USER") or os.environ.get("USER")
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


async def change_grants(
    args: argparse.Namespace, store: GrantStore, now: datetime, config_path: Path
) -> int:
    """Run add, revoke or offboard; print each grant it changed and audit the change."""
    by = args.by or default_by()
    if not by:
        raise UsageError("cannot tell who you are: pass --by NAME")
    if args.command == "add":
        grant = await add_grant(
            store,
            subject=args.subject,
            practice=args.practice,
            field_classes=args.fields,
            ttl=args.ttl,
            not_before=args.not_before,
            by=by,
            reason=args.reason,
            now=now,
        )
        print(f"added {grant_line(grant, now)}")
        audit_change(config_path, "add", by, [grant], now)
        return 0
    if args.command == "revoke":
        if args.subject is not None and not args.practice:
            raise UsageError("revoke --subject needs --practice (or use: phi-grants offboard)")
        revoked = await revoke_grants(
            store,
            grant_id=args.grant_id,
            subject=args.subject,
            practice=args.practice,
            by=by,
            reason=args.reason,
            now=now,
        )
    else:
        revoked = await offboard_subject(store, args.subject, by=by, reason=args.reason, now=now)
    for grant in revoked:
        print(f"revoked {grant_line(grant, now)}")
    audit_change(config_path, args.command, by, revoked, now)
    return 0

"""`phi-grants add`, `revoke` and `offboard`: every change names who made it and is audited.

The audit event holds ids, names and times only, never the free-text reason, which stays in the
grant history.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Any

from proxy.grants.cli_arguments import UsageError
from proxy.grants.cli_listing import grant_line, utc_text
from proxy.grants.errors import GrantNotFound
from proxy.grants.store import GrantRequest

if TYPE_CHECKING:
    import argparse
    from datetime import datetime
    from pathlib import Path

    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore
    from proxy.identity.subject import Subject

__all__ = ["change_details", "change_grants"]


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
        config_path, "grant_change", action, actor=by, now=now, details=change_details(grants)
    )


def change_details(grants: list[Grant]) -> dict[str, Any]:
    """The audit details of a grant change: ids, names and times, never the free-text reason.

    Shared with the SCIM service (proxy.scim), so an IdP's change reads like the CLI's.
    """
    return {
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
    }


async def _nothing_to_offboard(store: GrantStore, subject: Subject) -> GrantNotFound:
    """Exit 1 for an offboard that revoked nothing, saying whether the subject was ever seen.

    A script wired to HR offboarding must not read "done" from a typo in the subject; a
    re-run for someone already offboarded also exits 1, and the message says that is why.
    """
    earlier = len(await store.list(subject=subject))
    if earlier:
        return GrantNotFound(
            f"{subject} has no unexpired grant ({earlier} earlier grant(s) already ended: "
            "revoked or expired); nothing was revoked. If this person was offboarded before, "
            "nothing is left to do"
        )
    return GrantNotFound(
        f"{subject} has no grant in this store, now or before; nothing was revoked. Check "
        "the subject (ISSUER|SUB, exactly as `phi-grants list` prints it: the issuer as in "
        "identity.issuers, with no trailing /) and that grants.store is the proxy's store"
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
            raise await _nothing_to_offboard(store, args.subject)
    for grant in revoked:
        print(f"revoked {grant_line(grant, now)}")
    _audit(config_path, args.command, by, revoked, now)
    return 0

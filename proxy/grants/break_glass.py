"""Break-glass review and sign-off: the functions `phi-grants review` (and the admin API) call.

Every emergency grant (`bg_` id, see break_glass_model.py) waits for a security officer's
sign-off: they read the reason the caller gave, check what was disclosed under it
(`phi-audit report --subject`), and record their conclusion. A use still unacknowledged
`break_glass.signoff_within` after it was opened is a review finding (`phi-grants review`
exits 1), so a forgotten emergency cannot go unnoticed. A sign-off is final and audited.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import TYPE_CHECKING, Any

from proxy.grants.durations import format_duration
from proxy.grants.review_model import Finding, rough_span, short_time

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime, timedelta
    from pathlib import Path

    from proxy.grants.break_glass_model import BreakGlassUse, BreakGlassUses
    from proxy.grants.review_model import Review
    from proxy.grants.store import GrantStore

__all__ = [
    "acknowledge",
    "awaiting_signoff",
    "overdue_findings",
    "record_signoff",
    "signoff_details",
    "use_json",
    "use_lines",
    "with_break_glass",
]


async def awaiting_signoff(store: GrantStore) -> BreakGlassUses:
    """Every break-glass use no security officer has signed off yet, oldest first."""
    return await store.break_glass_uses(pending_only=True)


async def with_break_glass(review: Review, store: GrantStore) -> Review:
    """`review` plus the break-glass uses awaiting sign-off, and findings for the overdue ones.

    Uses are limited to the review's practice when it has one; each use unacknowledged for
    longer than `signoff_within` is a `break_glass_unacknowledged` finding.
    """
    o = review.options
    pending = [
        use
        for use in await awaiting_signoff(store)
        if o.practice is None or use.grant.practice == o.practice
    ]
    overdue = overdue_findings(
        pending, now=o.now, window=o.signoff_within, command=o.command("phi-grants")
    )
    return dataclasses.replace(
        review, findings=(*review.findings, *overdue), break_glass=tuple(pending)
    )


async def acknowledge(
    store: GrantStore, grant_id: str, *, by: str, note: str, now: datetime
) -> BreakGlassUse:
    """Sign off use `grant_id` (final) by `by` with `note`.

    Raises GrantNotFound when there is no such use or it is already signed off, and
    GrantError for an ordinary grant or an empty or unprintable `by`/`note`.
    """
    return await store.sign_off_break_glass(grant_id.strip(), by=by, note=note, now=now)


def signoff_details(use: BreakGlassUse) -> dict[str, Any]:
    """The audit details of a sign-off: the use, who opened it for what, and the officer's note."""
    grant = use.grant
    return {
        "grant_id": grant.id,
        "subject": str(grant.subject),
        "practice": grant.practice,
        "opened_at": _iso(grant.created_at),
        "note": None if use.signoff is None else use.signoff.note,
    }


def record_signoff(
    config_path: Path, use: BreakGlassUse, now: datetime, *, extra: Mapping[str, Any] | None = None
) -> None:
    """Append the sign-off to the audit trail (AuditError: done, but not audited).

    `extra`: what the admin API adds (its request and token ids), as for grant changes.
    """
    from proxy.audit.factory import record_change  # noqa: PLC0415 - only for changes

    by = None if use.signoff is None else use.signoff.by
    record_change(
        config_path,
        "grant_change",
        "break_glass_signoff",
        actor=by,
        now=now,
        details=signoff_details(use) | dict(extra or {}),
    )


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _signoff_command(use: BreakGlassUse, command: str) -> str:
    return (
        f"{command} review --acknowledge {use.id} --by NAME --note "
        f"{shlex.quote('what you checked and concluded')}"
    )


def overdue_findings(
    uses: Iterable[BreakGlassUse], *, now: datetime, window: timedelta, command: str
) -> list[Finding]:
    """One `break_glass_unacknowledged` finding per use unacknowledged for longer than `window`."""
    found = []
    for use in uses:
        if not use.overdue(now, window):
            continue
        grant = use.grant
        subject = shlex.quote(str(grant.subject))
        found.append(
            Finding(
                "break_glass_unacknowledged",
                "break-glass use not signed off",
                f"{grant.subject} opened emergency access to {grant.practice} on "
                f"{short_time(grant.created_at)} UTC ({rough_span(now - grant.created_at)} ago; "
                f"break_glass.signoff_within is {format_duration(window)}), giving the reason: "
                f"{grant.reason!r}.",
                "Check what was disclosed under it (phi-audit report --subject "
                f"{subject} --since {_iso(grant.created_at)}) against the reason, then sign it "
                "off: "
                f"{_signoff_command(use, command)}",
                grant_id=grant.id,
                subject=str(grant.subject),
                practice=grant.practice,
            )
        )
    return found


def _state(use: BreakGlassUse, now: datetime) -> str:
    grant = use.grant
    if grant.revoked_at is not None:
        return f"revoked {short_time(grant.revoked_at)}"
    if grant.expires_at <= now:
        return f"ended {short_time(grant.expires_at)}"
    return f"active until {short_time(grant.expires_at)}"


def use_lines(
    uses: Iterable[BreakGlassUse], *, now: datetime, window: timedelta, command: str
) -> list[str]:
    """The review's text section listing the uses awaiting sign-off."""
    listed = list(uses)
    if not listed:
        return ["Break-glass: no use awaits sign-off."]
    lines = [
        (
            f"Break-glass uses awaiting sign-off ({len(listed)}; sign off within "
            f"{format_duration(window)}, break_glass.signoff_within):"
        )
    ]
    for use in listed:
        grant = use.grant
        fields = "all" if grant.field_classes is None else ",".join(sorted(grant.field_classes))
        overdue = "  OVERDUE" if use.overdue(now, window) else ""
        lines += [
            (
                f"  {grant.id}  opened {short_time(grant.created_at)} by {grant.subject} at "
                f"{grant.practice} ({fields}); {_state(use, now)}{overdue}"
            ),
            f"      reason: {grant.reason}",
            (
                "      check:    phi-audit report --subject "
                f"{shlex.quote(str(grant.subject))} --since {_iso(grant.created_at)}"
            ),
            f"      sign off: {_signoff_command(use, command)}",
        ]
    return lines


def use_json(use: BreakGlassUse, *, now: datetime, window: timedelta) -> dict[str, Any]:
    """One use as plain JSON data (the review's `break_glass` list; docs/grants.md)."""
    grant = use.grant
    signoff = use.signoff
    return {
        "id": grant.id,
        "subject": str(grant.subject),
        "practice": grant.practice,
        "fields": None if grant.field_classes is None else sorted(grant.field_classes),
        "opened_at": _iso(grant.created_at),
        "expires_at": _iso(grant.expires_at),
        "revoked_at": None if grant.revoked_at is None else _iso(grant.revoked_at),
        "reason": grant.reason,
        "overdue": use.overdue(now, window),
        "signed_off": None
        if signoff is None
        else {"at": _iso(signoff.at), "by": signoff.by, "note": signoff.note},
    }

"""Adding, revoking and offboarding grants, and auditing each change: one path for every front end.

`phi-grants add|revoke|offboard` and the admin API (proxy.admin_api) both call these, so a grant
made over HTTP is checked by the same rules, refused with the same words and audited in the same
event shape as one made at the terminal. The SCIM service audits through `change_details` too.

The audit event holds ids, names and times only, never the free-text reason, which stays in the
grant history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxy.grants.errors import GrantError, GrantNotFound
from proxy.grants.store import GrantRequest

if TYPE_CHECKING:
    from datetime import datetime, timedelta
    from pathlib import Path

    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore
    from proxy.identity.subject import Subject

__all__ = [
    "add_grant",
    "audit_change",
    "change_details",
    "offboard_subject",
    "revoke_grants",
    "utc_text",
]


def utc_text(moment: datetime | None) -> str | None:
    """`2025-03-01T08:00:00Z`, or None for a time that is not set."""
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def change_details(grants: list[Grant]) -> dict[str, Any]:
    """The audit details of a grant change: ids, names and times, never the free-text reason."""
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


def audit_change(
    config_path: Path,
    action: str,
    by: str,
    grants: list[Grant],
    now: datetime,
    *,
    extra: dict[str, Any] | None = None,
) -> None:
    """Record the change in the audit trail (AuditError when it cannot be written).

    `extra`: more ids for the event (the admin API's request id and token id). Blocking (file
    lock, fsync): servers call it on a worker thread.
    """
    from proxy.audit.factory import record_change  # noqa: PLC0415 - only for changes

    if not grants:
        return
    details = {**change_details(grants), **(extra or {})}
    record_change(config_path, "grant_change", action, actor=by, now=now, details=details)


async def add_grant(
    store: GrantStore,
    *,
    subject: Subject,
    practice: str,
    field_classes: frozenset[str] | None,
    ttl: timedelta,
    not_before: datetime | None,
    by: str,
    reason: str,
    now: datetime,
) -> Grant:
    """Store a grant lasting `ttl` from `not_before` (default `now`); GrantError if refused."""
    start = not_before or now
    request = GrantRequest(
        subject=subject,
        practice=practice,
        field_classes=field_classes,
        expires_at=start + ttl,
        not_before=not_before,
        created_by=by,
        reason=reason,
    )
    return await store.add(request, now=now)


async def revoke_grants(
    store: GrantStore,
    *,
    grant_id: str | None,
    subject: Subject | None,
    practice: str | None,
    by: str,
    reason: str,
    now: datetime,
) -> list[Grant]:
    """Revoke one grant by id, or a subject's grants at one practice; GrantNotFound if none."""
    if (grant_id is None) == (subject is None):
        raise GrantError("name either one grant id, or a subject together with a practice")
    if subject is not None and not practice:
        raise GrantError(
            "revoking by subject needs the practice too (to end every grant the person holds, "
            "offboard them instead)"
        )
    return await store.revoke(
        grant_id=grant_id, subject=subject, practice=practice, by=by, reason=reason, now=now
    )


async def offboard_subject(
    store: GrantStore, subject: Subject, *, by: str, reason: str, now: datetime
) -> list[Grant]:
    """Revoke every unexpired grant of `subject`; GrantNotFound (saying why) when none was left.

    A script wired to HR offboarding must not read "done" from a typo in the subject; a re-run
    for someone already offboarded is refused too, and the message says that is why.
    """
    revoked = await store.offboard(subject, by=by, reason=reason, now=now)
    if revoked:
        return revoked
    earlier = len(await store.list(subject=subject))
    if earlier:
        raise GrantNotFound(
            f"{subject} has no unexpired grant ({earlier} earlier grant(s) already ended: "
            "revoked or expired); nothing was revoked. If this person was offboarded before, "
            "nothing is left to do"
        )
    raise GrantNotFound(
        f"{subject} has no grant in this store, now or before; nothing was revoked. Check "
        "the subject (ISSUER|SUB, exactly as `phi-grants list` prints it: the issuer as in "
        "identity.issuers, with no trailing /) and that grants.store is the proxy's store"
    )

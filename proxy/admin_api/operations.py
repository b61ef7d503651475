"""Administrator actions, each a change plus its audit event: one path for the API and the console.

The admin API's JSON handlers and the console's forms both call these, so a revoke clicked in the
console is checked, refused, stored and audited exactly as one sent with curl (and as
`phi-grants revoke`: the functions below call proxy.grants.changes and proxy.grants.break_glass).
Only the `via` ids differ: which channel, which request, which token.

The change is made first; if the audit trail then cannot be written, NotAudited says which grants
changed (so the administrator can record it by hand) and an alert fires.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.audit.errors import AuditError
from proxy.grants.break_glass import acknowledge, record_signoff
from proxy.grants.changes import add_grant, audit_change, offboard_subject, revoke_grants
from proxy.logs import ALERT_LOGGER

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from proxy.admin_api.auth import AdminIdentity
    from proxy.admin_api.handlers import ApiContext
    from proxy.grants.break_glass_model import BreakGlassUse
    from proxy.grants.model import Grant
    from proxy.identity.subject import Subject

__all__ = [
    "Actor",
    "NotAudited",
    "add",
    "offboard",
    "record_grant_change",
    "revoke",
    "sign_off",
]

_alerts = logging.getLogger(ALERT_LOGGER)
_log = logging.getLogger("phi_proxy.admin_api")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and through what: the verified administrator and the ids the audit adds.

    `via` goes into the audit event as is, e.g. {"via": "admin_api", "admin_request": …,
    "token_id": …}; its request id also goes into the alert when auditing fails.
    """

    identity: AdminIdentity
    via: dict[str, Any] = field(default_factory=dict)

    @property
    def by(self) -> str:
        """The subject the change is recorded under (grant history `by`, audit actor)."""
        return str(self.identity.subject)


class NotAudited(Exception):
    """The change WAS made, but its audit event could not be written (the alert has fired)."""

    def __init__(
        self, error: AuditError, grants: list[Grant], use: BreakGlassUse | None = None
    ) -> None:
        super().__init__(str(error))
        self.error = error
        self.grants = grants  # the grants changed (none for a sign-off)
        self.use = use  # the break-glass use signed off


def _alert(actor: Actor, exc: AuditError) -> None:
    ids = {k: v for k, v in actor.via.items() if k.endswith("_request") or k == "via"}
    _alerts.error("admin_change_not_audited", extra={"fields": {"error": str(exc), **ids}})


async def record_grant_change(
    context: ApiContext, actor: Actor, action: str, grants: list[Grant], now: datetime
) -> None:
    """Audit a grant change already made (NotAudited when the trail cannot be written)."""
    try:
        await asyncio.to_thread(
            audit_change, context.config_path, action, actor.by, grants, now, extra=actor.via
        )
    except AuditError as exc:
        _alert(actor, exc)
        raise NotAudited(exc, grants) from None
    _log.info(
        "admin change",
        extra={
            "fields": {
                "action": action,
                "by": actor.by,
                "via": actor.via.get("via"),
                "grants": [g.id for g in grants],
            }
        },
    )


async def add(
    context: ApiContext,
    actor: Actor,
    *,
    subject: Subject,
    practice: str,
    field_classes: frozenset[str] | None,
    ttl: timedelta,
    not_before: datetime | None,
    reason: str,
) -> tuple[Grant, datetime]:
    """Add a grant (as `phi-grants add`) and audit it; the grant and the time of the change."""
    now = context.clock()
    grant = await add_grant(
        context.grant_store(),
        subject=subject,
        practice=practice,
        field_classes=field_classes,
        ttl=ttl,
        not_before=not_before,
        by=actor.by,
        reason=reason,
        now=now,
    )
    await record_grant_change(context, actor, "add", [grant], now)
    return grant, now


async def revoke(
    context: ApiContext,
    actor: Actor,
    *,
    grant_id: str | None,
    subject: Subject | None,
    practice: str | None,
    reason: str,
) -> tuple[list[Grant], datetime]:
    """Revoke by id, or a person's grants at a practice (as `phi-grants revoke`), audited."""
    now = context.clock()
    revoked = await revoke_grants(
        context.grant_store(),
        grant_id=grant_id,
        subject=subject,
        practice=practice,
        by=actor.by,
        reason=reason,
        now=now,
    )
    await record_grant_change(context, actor, "revoke", revoked, now)
    return revoked, now


async def offboard(
    context: ApiContext, actor: Actor, subject: Subject, *, reason: str
) -> tuple[list[Grant], datetime]:
    """Revoke every grant of a person (as `phi-grants offboard`), audited."""
    now = context.clock()
    revoked = await offboard_subject(
        context.grant_store(), subject, by=actor.by, reason=reason, now=now
    )
    await record_grant_change(context, actor, "offboard", revoked, now)
    return revoked, now


async def sign_off(context: ApiContext, actor: Actor, grant_id: str, *, note: str) -> BreakGlassUse:
    """Sign off one break-glass use (as `phi-grants review --acknowledge`), audited.

    NotAudited carries the use signed off (the sign-off is final).
    """
    now = context.clock()
    use = await acknowledge(context.grant_store(), grant_id, by=actor.by, note=note, now=now)
    try:
        await asyncio.to_thread(record_signoff, context.config_path, use, now, extra=actor.via)
    except AuditError as exc:
        _alert(actor, exc)
        raise NotAudited(exc, [], use) from None
    _log.info(
        "admin change",
        extra={
            "fields": {
                "action": "break_glass_signoff",
                "by": actor.by,
                "via": actor.via.get("via"),
                "grants": [use.id],
            }
        },
    )
    return use

"""What the audit event of a break-glass request says: the flag, the outcome and the reason.

A request's event carries `break_glass` when the caller sent the header, or when any PHI it
disclosed came through a break-glass grant (also on later requests without the header, for as
long as the grant lasts). The reasons are the ones the caller gave when each grant was opened:
the trail is where a security officer reads them back (`phi-grants review` shows them too).
Events of ordinary requests are unchanged, byte for byte.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from proxy.audit.requests import AuditState

__all__ = ["break_glass_fields"]


def break_glass_fields(state: AuditState) -> dict[str, Any] | None:
    """The event's `break_glass` object for this request, or None when break-glass played no part.

    `grant_ids`/`reasons`: the break-glass grants that PHI was disclosed through (none when the
    trail was down and everything was masked). `reason`: the reason sent with this request, only
    for a caller allowed to break glass (an unauthorized caller's text is not recorded).
    """
    out, access, ask = state.response_stats, state.access, state.break_glass
    used: list[str] = []
    if out is not None and access is not None and access.break_glass and not state.denied:
        used = sorted({g for p in out.practices for g in access.break_glass_ids_for(p)})
    if ask is None and not used:
        return None
    fields: dict[str, Any] = {
        "outcome": "in_effect" if ask is None else ask.outcome,
        "grant_ids": used,
        "reasons": [access.break_glass[g] for g in used] if access is not None else [],
    }
    if ask is not None and ask.reason is not None:
        fields["reason"] = ask.reason
    if ask is not None and ask.practice is not None:
        fields["practice"] = ask.practice
    return fields

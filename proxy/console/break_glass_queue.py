"""The break-glass queue's data: every emergency use, its sign-off, and what was disclosed under it.

The uses and their sign-offs come from the grant store (`break_glass_uses`, as `phi-grants
review` reads them); what each disclosed comes from the audit trail, read in one verifying pass:
every request event whose `break_glass.grant_ids` names the use. Those events are counted by
the report's own `Disclosures`, limited to the use's subject and practice, so a record shown
here is one `phi-audit report --subject S --practice P` lists too. (A request that also ran
under an ordinary grant of the same practice shows all it disclosed there: the event does not
say which grant each value came through.)

Sign-off is not here: the view calls `proxy.admin_api.operations.sign_off`, the function behind
`POST /api/v1/break-glass/{id}/acknowledge`, which calls `proxy.grants.break_glass.acknowledge`
and `record_signoff` as `phi-grants review --acknowledge` does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from keys.config_file import load_section
from proxy.audit.report import Disclosures, ReportFilter, ReportRow
from proxy.console.trail_pass import Verification, verified_pass
from proxy.console.trail_reader import in_trail_process
from proxy.grants.break_glass_settings import BreakGlassSettings

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime, timedelta
    from pathlib import Path

    from proxy.grants.break_glass_model import BreakGlassUse, SignOff
    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore

__all__ = [
    "MAX_REQUEST_IDS",
    "SIGNED_OFF_SHOWN",
    "BreakGlassQueue",
    "QueueEntry",
    "UseDisclosures",
    "load_queue",
]

#: Request ids kept per use (for finding the requests in the proxy's log); the count is exact.
MAX_REQUEST_IDS = 50
#: Signed-off uses the page shows (newest first); every sign-off is also in the audit trail.
SIGNED_OFF_SHOWN = 100


@dataclass(slots=True)
class _Requests:
    count: int = 0
    first: str = ""
    last: str = ""
    ids: list[str] = field(default_factory=list)

    def add(self, ts: str, request_id: object) -> None:
        self.count += 1
        self.first = min(self.first, ts) if self.first else ts
        self.last = max(self.last, ts)
        if isinstance(request_id, str) and len(self.ids) < MAX_REQUEST_IDS:
            self.ids.append(request_id)

    def merge(self, other: _Requests) -> None:
        self.count += other.count
        self.first = min(filter(None, (self.first, other.first)), default="")
        self.last = max(self.last, other.last)
        self.ids.extend(other.ids[: MAX_REQUEST_IDS - len(self.ids)])


class UseDisclosures:
    """An event sink: per break-glass use, the requests that ran under it and their disclosures.

    `uses`: grant id → (subject, practice) of the uses to look for. Picklable, so a worker
    process can gather a segment of the trail.
    """

    __slots__ = ("requests", "totals", "uses")

    def __init__(self, uses: Mapping[str, tuple[str, str]]) -> None:
        """Look for the events of `uses`."""
        self.uses = dict(uses)
        self.totals: dict[str, Disclosures] = {}
        self.requests: dict[str, _Requests] = {}

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.uses, self.totals, self.requests)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.uses, self.totals, self.requests = state

    def add(self, event: dict[str, Any]) -> None:
        """Count `event` for every use its `break_glass.grant_ids` names."""
        glass = event.get("break_glass")
        if not isinstance(glass, dict) or event.get("type") != "request":
            return
        ids = glass.get("grant_ids")
        if not isinstance(ids, list):
            return
        for grant_id in ids:
            use = self.uses.get(grant_id) if isinstance(grant_id, str) else None
            if use is None or event.get("subject") != use[0]:
                continue
            totals = self.totals.get(grant_id)
            if totals is None:
                where = ReportFilter(subject=use[0], practice=use[1])
                totals = self.totals[grant_id] = Disclosures(where)
            totals.add(event)
            self.requests.setdefault(grant_id, _Requests()).add(
                str(event.get("ts", "")), event.get("request_id")
            )

    def merge(self, other: UseDisclosures) -> None:
        """Add another stretch of the trail's findings to these."""
        for grant_id, totals in other.totals.items():
            mine = self.totals.get(grant_id)
            if mine is None:
                self.totals[grant_id] = totals
            else:
                mine.merge(totals)
        for grant_id, requests in other.requests.items():
            self.requests.setdefault(grant_id, _Requests()).merge(requests)


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One use: the grant the emergency opened, its sign-off, and what the trail shows of it."""

    use: BreakGlassUse
    overdue: bool
    disclosed: list[ReportRow]
    requests: int = 0
    first_request: str = ""
    last_request: str = ""
    request_ids: tuple[str, ...] = ()

    @property
    def grant(self) -> Grant:
        """The break-glass grant (`bg_…`)."""
        return self.use.grant

    @property
    def signoff(self) -> SignOff | None:
        """The sign-off, or None while the use awaits one."""
        return self.use.signoff

    @property
    def records(self) -> int:
        """Distinct records disclosed under the use."""
        return len({(r.practice, r.record) for r in self.disclosed})

    def state(self, now: datetime) -> str:
        """`active`, `ended` or `revoked`: whether the grant still opens records."""
        grant = self.grant
        if grant.revoked_at is not None:
            return "revoked"
        return "ended" if grant.expires_at <= now else "active"


@dataclass(frozen=True, slots=True)
class BreakGlassQueue:
    """Uses awaiting sign-off (oldest first) and the newest signed off (newest sign-off first)."""

    awaiting: list[QueueEntry]
    signed_off: list[QueueEntry]
    signoff_within: timedelta
    now: datetime
    #: None when there was no use to look up (the trail was not read).
    verification: Verification | None
    #: Every use ever signed off (`signed_off` holds the newest of them).
    signed_off_total: int = 0


def _entry(
    use: BreakGlassUse, found: UseDisclosures, now: datetime, window: timedelta
) -> QueueEntry:
    totals = found.totals.get(use.id)
    requests = found.requests.get(use.id, _Requests())
    return QueueEntry(
        use=use,
        overdue=use.overdue(now, window),
        disclosed=[] if totals is None else totals.rows(),
        requests=requests.count,
        first_request=requests.first,
        last_request=requests.last,
        request_ids=tuple(requests.ids),
    )


def _gather(config_path: Path, uses: list[BreakGlassUse]) -> tuple[UseDisclosures, Verification]:
    """One verifying pass over the trail for the events of `uses` (blocking)."""
    wanted = {u.id: (str(u.grant.subject), u.grant.practice) for u in uses}
    trail = verified_pass(config_path, partial(UseDisclosures, wanted))
    found = UseDisclosures(wanted)
    for sink in trail.sinks:
        found.merge(sink)
    return found, trail.verification


async def load_queue(
    store: GrantStore,
    config_path: Path,
    *,
    now: datetime,
    signed_off_shown: int = SIGNED_OFF_SHOWN,
) -> BreakGlassQueue:
    """Every use awaiting sign-off and the newest signed off, with their disclosures.

    The trail is read (verified) only for the uses shown: all those awaiting sign-off and the
    `signed_off_shown` most recently signed off.
    """
    glass = await asyncio.to_thread(load_section, config_path, "break_glass", BreakGlassSettings)
    window = glass.signoff_within
    uses = await store.break_glass_uses()
    pending = [use for use in uses if use.signoff is None]
    done = sorted(
        (use for use in uses if use.signoff is not None),
        key=lambda use: use.signoff.at if use.signoff is not None else now,
        reverse=True,
    )
    shown = [*pending, *done[:signed_off_shown]]
    verification: Verification | None = None
    found = UseDisclosures({})
    if shown:
        found, verification = await in_trail_process(partial(_gather, config_path, shown))
    return BreakGlassQueue(
        awaiting=[_entry(use, found, now, window) for use in pending],
        signed_off=[_entry(use, found, now, window) for use in done[:signed_off_shown]],
        signoff_within=window,
        now=now,
        verification=verification,
        signed_off_total=len(done),
    )

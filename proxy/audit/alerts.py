"""Alert lines a person can still read while a caller loops: per request, bounded, rate-limited.

A revoked user retrying in a loop once wrote 6,478 `lapsed_grant_use` lines (26 MB) on one
replica, each listing every lapsed grant id, and `integrity_failure` was one line per token
(83 lines for 7 requests). Alerts are for a human; the evidence is the audit trail, which keeps
every event whatever is held back here. So:

- one line per request and alert, with counts, and lists of at most `MAX_LISTED` ids plus the
  full count;
- per subject and alert, at most one line per `audit.alerts.repeat_interval_seconds`; the next
  line that is written says how many were held back (`suppressed`).

Only the alerts a caller's own requests raise and can repeat at will are held back: `THROTTLED`
(`canary_touched` too: its first line for a subject is written at once, and the trail keeps
every touch).
The others need a human at once and happen once per change of the system's state
(`kek_unavailable`, `kek_available`, `key_usage_high`); `masked_burst` is its own limiter (once
per window per subject). Memory is bounded: both limiters forget the least recently seen
subjects first.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from proxy import metrics
from proxy.logs import ALERT_LOGGER

if TYPE_CHECKING:
    from collections.abc import Iterable

    from proxy.accesslog import AccessRecord
    from proxy.audit.events import CanaryTouch
    from proxy.grants import Access
    from proxy.transform import TransformStats

__all__ = [
    "MAX_LISTED",
    "THROTTLED",
    "AlertLimiter",
    "MaskedBurst",
    "RequestAlerts",
    "integrity_fields",
    "lapsed_fields",
]

_alerts = logging.getLogger(ALERT_LOGGER)

#: Ids (grant ids, key ids, practices) one alert line lists; the line also gives the full count.
MAX_LISTED: Final = 10
#: Alerts held back to one line per subject per `repeat_interval_seconds`. A break-glass use
#: that opens a new grant is never held back (at most `break_glass.max_per_day` a day each).
THROTTLED: Final = frozenset(
    {
        "lapsed_grant_use",
        "integrity_failure",
        "canary_touched",
        "break_glass_use",
        "break_glass_refused",
        "break_glass_without_claim",
    }
)
#: Break-glass outcomes that refused the caller (proxy.break_glass_gate).
_REFUSED: Final = frozenset(
    {
        "refused_reason",
        "refused_limit",
        "refused_several_practices",
        "store_unavailable",
        "audit_unavailable",
    }
)
#: Subjects (per alert) a limiter remembers; the least recently seen are forgotten first.
MAX_SUBJECTS: Final = 10_000


def _listed(items: Iterable[str]) -> tuple[list[str], int]:
    """The first MAX_LISTED of `items` in sorted order, and how many there are in all."""
    distinct = sorted(set(items))
    return distinct[:MAX_LISTED], len(distinct)


def lapsed_fields(stats: TransformStats, access: Access) -> dict[str, Any] | None:
    """What one request's `lapsed_grant_use` line says; None when nothing lapsed was withheld."""
    practices = [p for p in stats.withheld if access.lapsed_grant_ids_for(p)]
    if not practices:
        return None
    listed_practices, practice_count = _listed(practices)
    grant_ids, grant_count = _listed(g for p in practices for g in access.lapsed_grant_ids_for(p))
    return {
        "practices": listed_practices,
        "practice_count": practice_count,
        "lapsed_grant_ids": grant_ids,
        "lapsed_grant_count": grant_count,
    }


def integrity_fields(stats: TransformStats) -> dict[str, Any] | None:
    """What one request's `integrity_failure` line says; None when every token opened.

    The transform describes the first `MAX_INTEGRITY_EVENTS` failures of a body and counts the
    rest: `reasons` covers the described ones, `unclassified` the others.
    """
    if not stats.integrity_failures:
        return None
    events = stats.integrity_events
    kids, kid_count = _listed(e.kid for e in events if e.kid is not None)
    return {
        "failures": stats.integrity_failures,
        "reasons": dict(sorted(Counter(e.reason for e in events).items())),
        "unclassified": max(0, stats.integrity_failures - len(events)),
        "kids": kids,
        "kid_count": kid_count,
    }


@dataclass(slots=True)
class _Slot:
    next_at: float
    suppressed: int = 0


class AlertLimiter:
    """At most one line per (alert, subject) per `interval` seconds; counts what it holds back.

    A subject forgotten to keep memory bounded loses its held-back count from the log only;
    the audit trail has every event.
    """

    def __init__(self, interval: float, max_subjects: int = MAX_SUBJECTS) -> None:
        """Allow one line per (alert, subject) per `interval` seconds."""
        self.interval = interval
        self._max = max_subjects
        self._slots: OrderedDict[tuple[str, str | None], _Slot] = OrderedDict()

    def admit(self, alert: str, subject: str | None, now: float) -> int | None:
        """None: hold this line back (and count it); else how many were held back before it."""
        key = (alert, subject)
        slot = self._slots.get(key)
        if slot is None:
            self._slots[key] = _Slot(now + self.interval)
            if len(self._slots) > self._max:
                self._slots.popitem(last=False)
            return 0
        self._slots.move_to_end(key)
        if now < slot.next_at:
            slot.suppressed += 1
            return None
        suppressed, slot.suppressed, slot.next_at = slot.suppressed, 0, now + self.interval
        return suppressed


class MaskedBurst:
    """A per-subject sliding-window counter of masked responses; says when to alert.

    It alerts when a subject's count in the window reaches the threshold, then stays quiet for
    that subject until the window has emptied, so a burst is one alert line, not hundreds.
    Memory is bounded: at most `threshold` timestamps per subject (enough to tell whether the
    threshold was reached), and the least recently seen subjects are forgotten first.
    """

    def __init__(self, threshold: int, window: float) -> None:
        """Alert at `threshold` masked responses within `window` seconds."""
        self.threshold = threshold
        self.window = window
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()
        self._quiet_until: dict[str, float] = {}

    def hit(self, subject: str, now: float) -> int | None:
        """Count one masked response; the count (the threshold) when an alert is due, else None."""
        hits = self._hits.pop(subject, None) or deque(maxlen=self.threshold)
        self._hits[subject] = hits
        hits.append(now)
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(self._hits) > MAX_SUBJECTS:
            old, _ = self._hits.popitem(last=False)
            self._quiet_until.pop(old, None)
        if len(hits) >= self.threshold and now >= self._quiet_until.get(subject, 0.0):
            self._quiet_until[subject] = now + self.window
            return len(hits)
        return None


class RequestAlerts:
    """The alert lines one finished request raises, through the limiters."""

    def __init__(
        self, *, repeat_interval: float, burst_threshold: int, burst_window: float
    ) -> None:
        """Limit throttled alerts to one per subject per `repeat_interval` seconds."""
        self.limiter = AlertLimiter(repeat_interval)
        self.burst = MaskedBurst(burst_threshold, burst_window)

    def lapsed(
        self, record: AccessRecord, stats: TransformStats, access: Access, now: float
    ) -> None:
        """A caller whose grant lapsed asked for that practice's PHI and got masks."""
        fields = lapsed_fields(stats, access)
        if fields is None:
            return
        metrics.current().alert("lapsed_grant_use")
        suppressed = self.limiter.admit("lapsed_grant_use", record.subject, now)
        if suppressed is None:
            return
        _alerts.warning(
            "lapsed_grant_use",
            extra={"fields": self._head(record) | fields | {"suppressed": suppressed}},
        )

    def integrity(self, record: AccessRecord, stats: TransformStats, now: float) -> None:
        """Tokens in the portal's answer that did not open (masked for this caller)."""
        fields = integrity_fields(stats)
        if fields is None:
            return
        metrics.current().alert("integrity_failure")
        suppressed = self.limiter.admit("integrity_failure", record.subject, now)
        if suppressed is None:
            return
        _alerts.warning(
            "integrity_failure",
            extra={"fields": self._head(record) | fields | {"suppressed": suppressed}},
        )

    def canary(self, record: AccessRecord, touches: Iterable[CanaryTouch], now: float) -> None:
        """A canary patient's token passed through the proxy: no real workflow reads one.

        One line per request (at most MAX_LISTED touches listed, with the count), at `error`
        level: someone is reading or searching records they have no reason to, right now.
        """
        distinct = sorted(set(touches))
        if not distinct:
            return
        metrics.current().alert("canary_touched")
        suppressed = self.limiter.admit("canary_touched", record.subject, now)
        if suppressed is None:
            return
        _alerts.error(
            "canary_touched",
            extra={
                "fields": self._head(record)
                | {
                    "touches": [t.to_json() for t in distinct[:MAX_LISTED]],
                    "touch_count": len(distinct),
                    "suppressed": suppressed,
                }
            },
        )

    def masked(self, record: AccessRecord, now: float) -> None:
        """One masked response for an identified caller: alert when it completes a burst."""
        if record.subject is None:
            return
        count = self.burst.hit(record.subject, now)
        if count is None:
            return
        metrics.current().alert("masked_burst")
        _alerts.warning(
            "masked_burst",
            extra={
                "fields": self._head(record)
                | {"masked_responses": count, "window_seconds": self.burst.window}
            },
        )

    def break_glass(self, record: AccessRecord, fields: dict[str, Any], now: float) -> None:
        """Alert on break-glass: a use, a refusal, or a header from a caller without the claim.

        A use is PHI disclosed through a break-glass grant, or a grant just opened (never held
        back). The reason text stays in the audit trail (it may say more than a log line
        should carry).
        """
        outcome = fields["outcome"]
        new = outcome == "granted"
        grant_ids, grant_count = _listed(fields["grant_ids"])
        line = self._head(record) | {"outcome": outcome}
        if new or grant_ids:
            metrics.current().alert("break_glass_use")
            suppressed = 0 if new else self.limiter.admit("break_glass_use", record.subject, now)
            if suppressed is not None:
                _alerts.warning(
                    "break_glass_use",
                    extra={
                        "fields": line
                        | {
                            "new_grant": new,
                            "grant_ids": grant_ids,
                            "grant_count": grant_count,
                            "practice": fields.get("practice"),
                            "suppressed": suppressed,
                            "sign_off": "phi-grants review, then --acknowledge ID --by WHO "
                            "--note TEXT",
                        }
                    },
                )
        elif outcome in _REFUSED:
            metrics.current().alert("break_glass_refused")
            suppressed = self.limiter.admit("break_glass_refused", record.subject, now)
            if suppressed is not None:
                _alerts.warning(
                    "break_glass_refused", extra={"fields": line | {"suppressed": suppressed}}
                )
        elif outcome == "unauthorized":
            metrics.current().alert("break_glass_without_claim")
            suppressed = self.limiter.admit("break_glass_without_claim", record.subject, now)
            if suppressed is not None:
                _alerts.warning(
                    "break_glass_without_claim",
                    extra={"fields": line | {"suppressed": suppressed}},
                )

    @staticmethod
    def _head(record: AccessRecord) -> dict[str, Any]:
        return {"request_id": record.request_id, "subject": record.subject}

"""The incident view's data: whose records one person saw in a time window, from the verified trail.

After an incident the compliance officer needs the breach-notification list: every record a
subject was shown, which field classes, how often, first and last. It is `phi-audit report`'s
list, computed by the same code (`Disclosures`, `merged_report`, `render_report`) in the same
verifying pass over the same trail, so the CSV the page exports is byte for byte what
`phi-audit report --subject S --since A --until B --format csv` prints. The chart's numbers are
that same count split by day: each day's events go to a `Disclosures` of their own, so the days
add up to the list's total by construction, not by a second implementation of the report.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from proxy.audit.events import iso_time, parse_time
from proxy.audit.report import (
    UNKNOWN_RECORD,
    Disclosures,
    ReportFilter,
    ReportRow,
    merged_report,
    render_report,
)
from proxy.console.chart import BarChart, Series
from proxy.console.trail_pass import verified_pass
from proxy.console.trail_reader import in_trail_process

if TYPE_CHECKING:
    from pathlib import Path

    from proxy.console.trail_pass import Verification

__all__ = [
    "MAX_CHART_DAYS",
    "DailyDisclosures",
    "Incident",
    "IncidentQuery",
    "IncidentQueryError",
    "incident_report",
    "load_incident",
]

#: The most days the chart draws one bar each for; a longer window is drawn in weeks.
MAX_CHART_DAYS = 92
_MAX_SUBJECT = 1000


class IncidentQueryError(ValueError):
    """The incident form was filled in wrongly; the message says what to enter instead."""


def _when(label: str, text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise IncidentQueryError(
            f"{label}: {text!r} is not a date or time; enter e.g. 2026-03-01 or "
            "2026-03-01T14:00Z (UTC unless a zone is given)"
        ) from None


@dataclass(frozen=True, slots=True)
class IncidentQuery:
    """A subject (as the trail logs it: `issuer|sub`) and a window [since, until)."""

    subject: str
    since: datetime | None = None
    until: datetime | None = None

    @classmethod
    def parse(cls, subject: str, since: str = "", until: str = "") -> IncidentQuery:
        """The query from the form's text (times as `phi-audit report` reads them)."""
        subject = subject.strip()
        if not subject:
            raise IncidentQueryError(
                "subject: enter the person's subject as the audit trail logs it, "
                "issuer|sub (e.g. https://idp.example|u-123)"
            )
        if len(subject) > _MAX_SUBJECT or not subject.isprintable():
            raise IncidentQueryError(
                f"subject: at most {_MAX_SUBJECT} printable characters, as the trail logs it"
            )
        query = cls(subject, _when("from", since), _when("until", until))
        if query.since is not None and query.until is not None and query.until <= query.since:
            raise IncidentQueryError("until: must be after from (the window is [from, until))")
        return query

    def report_filter(self) -> ReportFilter:
        """The filter `phi-audit report --subject --since --until` builds from the same values."""
        return ReportFilter(subject=self.subject, since=self.since, until=self.until)

    def command(self) -> list[str]:
        """`phi-audit report`'s arguments for the same list as CSV (shown on the page)."""
        argv = ["phi-audit", "report", "--subject", self.subject]
        if self.since is not None:
            argv += ["--since", iso_time(self.since)]
        if self.until is not None:
            argv += ["--until", iso_time(self.until)]
        return [*argv, "--format", "csv"]

    def filename(self) -> str:
        """A download name for the CSV: only safe characters, says whose list and when."""
        sub = self.subject.rsplit("|", 1)[-1]
        who = re.sub(r"[^A-Za-z0-9-]+", "_", sub).strip("_")[:60] or "subject"
        span = "-".join(
            moment.strftime("%Y%m%dT%H%MZ")
            for moment in (self.since, self.until)
            if moment is not None
        )
        return f"notification-list_{who}{'_' + span if span else ''}.csv"


class DailyDisclosures:
    """An event sink: the report's totals, one `Disclosures` per day of the event's `ts`.

    Picklable, like `Disclosures`, so a worker process can gather a segment of the trail.
    """

    __slots__ = ("days", "where")

    def __init__(self, where: ReportFilter) -> None:
        """Count the request events matching `where`, by UTC day."""
        self.where = where
        self.days: dict[str, Disclosures] = {}

    def __getstate__(self) -> tuple[ReportFilter, dict[str, Disclosures]]:
        return (self.where, self.days)

    def __setstate__(self, state: tuple[ReportFilter, dict[str, Disclosures]]) -> None:
        self.where, self.days = state

    def add(self, event: dict[str, Any]) -> None:
        """Give `event` to its day's totals (only events the report could count: cheap skip)."""
        if event.get("type") != "request":
            return
        subject = event.get("subject")
        if not isinstance(subject, str) or (self.where.subject and subject != self.where.subject):
            return
        day = str(event.get("ts", ""))[:10]
        totals = self.days.get(day)
        if totals is None:
            totals = self.days[day] = Disclosures(self.where)
        totals.add(event)


@dataclass(frozen=True, slots=True)
class Incident:
    """The notification list, its verification, and the disclosures per day per practice."""

    query: IncidentQuery
    verification: Verification
    rows: list[ReportRow]
    #: (day, practice) → disclosures that day; day is `YYYY-MM-DD` (UTC).
    per_day: dict[tuple[str, str], int]
    #: Disclosures in events whose time is not a date (only in an edited trail).
    undated: int = 0

    def csv(self) -> str:
        """Exactly what `phi-audit report … --format csv` prints (its trailing newline too)."""
        return render_report(self.rows, "csv") + "\n"

    @property
    def disclosures(self) -> int:
        """Disclosures counted (the report's `count` column, summed)."""
        return sum(r.count for r in self.rows)

    @property
    def records(self) -> int:
        """Distinct named records disclosed (as the report's table summary counts them)."""
        return len({(r.practice, r.record) for r in self.rows if r.record != UNKNOWN_RECORD})

    @property
    def practices(self) -> list[str]:
        """The practices (as the report names them) with any disclosure, sorted."""
        return sorted({practice for _, practice in self.per_day})

    def chart(self) -> BarChart:
        """Disclosures per day (per week for a long window) per practice, zero days included."""
        days = sorted({day for day, _ in self.per_day})
        first = self._start(days)
        last = self._end(days)
        if first is None or last is None:
            return BarChart((), ())
        if days:  # an edited trail may hold times the window's string comparison let through
            first = min(first, date.fromisoformat(days[0]))
            last = max(last, date.fromisoformat(days[-1]))
        span = (last - first).days + 1
        step = 1 if span <= MAX_CHART_DAYS else 7
        buckets = [first + timedelta(days=n) for n in range(0, span, step)]
        index = {bucket: n for n, bucket in enumerate(buckets)}
        values: dict[str, list[int]] = {p: [0] * len(buckets) for p in self.practices}
        for (day, practice), count in self.per_day.items():
            moment = date.fromisoformat(day)
            bucket = first + timedelta(days=(moment - first).days // step * step)
            values[practice][index[bucket]] += count
        labels = tuple(
            bucket.isoformat() if step == 1 else f"week of {bucket.isoformat()}"
            for bucket in buckets
        )
        return BarChart(labels, tuple(Series(p, tuple(values[p])) for p in self.practices))

    def _start(self, days: list[str]) -> date | None:
        if self.query.since is not None and self._window_fits():
            return self.query.since.date()
        return date.fromisoformat(days[0]) if days else None

    def _end(self, days: list[str]) -> date | None:
        until = self.query.until
        if until is not None and self._window_fits():
            return (until - timedelta(microseconds=1)).date()
        return date.fromisoformat(days[-1]) if days else None

    def _window_fits(self) -> bool:
        """True when the window is bounded on both ends and short enough to draw every day."""
        since, until = self.query.since, self.query.until
        return since is not None and until is not None and until - since <= timedelta(days=366)


def _is_day(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == len("2026-01-01")


def incident_report(config_path: Path, query: IncidentQuery) -> Incident:
    """Verify the trail and gather the subject's disclosures in [since, until) (blocking)."""
    where = query.report_filter()
    trail = verified_pass(config_path, partial(DailyDisclosures, where))
    per_day: dict[tuple[str, str], int] = defaultdict(int)
    undated = 0
    days: list[Disclosures] = []
    for sink in trail.sinks:
        for day, totals in sink.days.items():
            days.append(totals)
            for row in totals.rows():
                if _is_day(day):
                    per_day[day, row.practice] += row.count
                else:
                    undated += row.count
    rows = merged_report([Disclosures(where), *days], where)
    return Incident(query, trail.verification, rows, dict(per_day), undated)


async def load_incident(config_path: Path, query: IncidentQuery) -> Incident:
    """`incident_report` in the console's trail reader process: the proxy keeps serving."""
    return await in_trail_process(partial(incident_report, config_path, query))

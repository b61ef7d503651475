"""`phi-audit report --canaries`: every request that touched a canary patient, one row per touch.

A canary (docs/canaries.md) is a made-up patient no real workflow reads, so every row is a lead:
who, when, which practice and field class, whether the value was shown (`disclosed`), masked
(`masked`) or sent to the portal (`sent`: a write or search carrying it), and the request id that
ties the row to the access log and the alert line. Rows come from the `canary` list of request
events; events without one are skipped. The same filters as the disclosure report apply.
"""

from __future__ import annotations

import csv
import io
from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING, Any

import orjson

from proxy.audit.events import iso_time
from proxy.audit.report import align_columns, csv_cell, printable_json

if TYPE_CHECKING:
    from collections.abc import Iterable

    from proxy.audit.report import ReportFilter

__all__ = ["CanaryRow", "build_canary_report", "render_canary_report"]

_COLUMNS = ("ts", "subject", "practice", "field_class", "how", "canary", "request_id")


@dataclass(frozen=True, slots=True, order=True)
class CanaryRow:
    """One touch of one canary field by one request."""

    ts: str
    subject: str
    practice: str
    field_class: str
    how: str
    canary: str
    request_id: str


def _touches(event: dict[str, Any]) -> Iterable[dict[str, str]]:
    items = event.get("canary")
    if not isinstance(items, list):
        return ()
    return ({k: str(v) for k, v in item.items()} for item in items if isinstance(item, dict))


def build_canary_report(events: Iterable[dict[str, Any]], where: ReportFilter) -> list[CanaryRow]:
    """The touches of the request events matching `where`, in time order."""
    since = iso_time(where.since) if where.since is not None else None
    until = iso_time(where.until) if where.until is not None else None
    rows: list[CanaryRow] = []
    for event in events:
        if event.get("type") != "request" or "canary" not in event:
            continue
        ts = str(event.get("ts", ""))
        subject = event.get("subject")
        who = subject if isinstance(subject, str) else "(anonymous)"
        if where.subject and who != where.subject:
            continue
        if (since is not None and ts < since) or (until is not None and ts >= until):
            continue
        for touch in _touches(event):
            practice = touch.get("practice", "")
            if where.practice and practice != where.practice:
                continue
            rows.append(
                CanaryRow(
                    ts,
                    who,
                    practice,
                    touch.get("field_class", ""),
                    touch.get("how", ""),
                    touch.get("canary", ""),
                    str(event.get("request_id", "")),
                )
            )
    return sorted(rows)


def render_canary_report(rows: list[CanaryRow], fmt: str) -> str:
    """`table` for people, `json` and `csv` for tools (cells shown printable, as the report's)."""
    if fmt == "json":
        return printable_json(
            orjson.dumps(
                [dict(zip(_COLUMNS, astuple(r), strict=True)) for r in rows],
                option=orjson.OPT_INDENT_2,
            ).decode()
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(_COLUMNS)
        writer.writerows(tuple(map(csv_cell, astuple(r))) for r in rows)
        return out.getvalue().rstrip("\n")
    lines = align_columns([tuple(c.upper() for c in _COLUMNS), *(astuple(r) for r in rows)])
    subjects = {r.subject for r in rows}
    requests = {r.request_id for r in rows}
    lines.append(
        f"{len(rows)} canary touch(es) in {len(requests)} request(s) by {len(subjects)} "
        "subject(s)"
        + ("; no real workflow reads a canary: find out why each one happened" if rows else "")
    )
    return "\n".join(lines)

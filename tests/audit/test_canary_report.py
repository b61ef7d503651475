"""`phi-audit report --canaries`: one row per touch, filtered, printable, formula-safe."""

from __future__ import annotations

from datetime import UTC, datetime

from proxy.audit.canary_report import build_canary_report, render_canary_report
from proxy.audit.report import ReportFilter


def _event(ts, subject, touches, request_id="r1"):
    return {
        "type": "request",
        "ts": ts,
        "subject": subject,
        "request_id": request_id,
        "canary": [
            {"canary": c, "practice": p, "field_class": f, "how": h} for c, p, f, h in touches
        ],
    }


EVENTS = [
    _event("2026-03-02T10:00:00.000Z", "i|mallory", [("c_1", "practice-a", "ssn", "masked")]),
    {"type": "request", "ts": "2026-03-02T10:30:00.000Z", "subject": "i|alice"},  # no canary
    _event(
        "2026-03-02T11:00:00.000Z",
        "i|alice",
        [("c_1", "practice-a", "ssn", "disclosed"), ("c_2", "practice-b", "history", "sent")],
        "r2",
    ),
    _event("2026-03-02T12:00:00.000Z", None, [("c_2", "practice-b", "history", "masked")], "r3"),
    {"type": "grant_change", "ts": "2026-03-02T12:30:00.000Z", "canary": "not a request"},
]


class TestCanaryReport:
    def test_every_touch_is_a_row_in_time_order(self):
        """Each touch of each request event; events without one and other types are skipped."""
        rows = build_canary_report(EVENTS, ReportFilter())
        assert [(r.subject, r.canary, r.how, r.request_id) for r in rows] == [
            ("i|mallory", "c_1", "masked", "r1"),
            ("i|alice", "c_1", "disclosed", "r2"),
            ("i|alice", "c_2", "sent", "r2"),
            ("(anonymous)", "c_2", "masked", "r3"),
        ]

    def test_filters_by_subject_practice_and_time(self):
        """--subject, --practice, --since and --until narrow the rows as in the main report."""
        since = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
        until = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
        rows = build_canary_report(EVENTS, ReportFilter(since=since, until=until))
        assert [r.request_id for r in rows] == ["r2", "r2"]
        rows = build_canary_report(EVENTS, ReportFilter(subject="i|alice", practice="practice-b"))
        assert [(r.canary, r.how) for r in rows] == [("c_2", "sent")]

    def test_table_escapes_control_characters_and_csv_neutralises_formulas(self):
        """A subject is caller-chosen text: no terminal escape runs, no spreadsheet formula."""
        events = [_event("2026-03-02T10:00:00.000Z", "=cmd|\x1b[2J", [("c_1", "p", "ssn", "sent")])]
        rows = build_canary_report(events, ReportFilter())
        table = render_canary_report(rows, "table")
        assert "\x1b" not in table
        assert "\\x1b[2J" in table
        assert "1 canary touch(es) in 1 request(s) by 1 subject(s)" in table
        csv_text = render_canary_report(rows, "csv")
        assert ",'=cmd|" in csv_text

    def test_no_touches_says_so(self):
        """An empty report still has its header and a count of zero."""
        table = render_canary_report([], "table")
        assert table.splitlines()[0].split() == [
            "TS",
            "SUBJECT",
            "PRACTICE",
            "FIELD_CLASS",
            "HOW",
            "CANARY",
            "REQUEST_ID",
        ]
        assert table.splitlines()[-1].startswith("0 canary touch(es)")
        assert render_canary_report([], "json") == "[]"

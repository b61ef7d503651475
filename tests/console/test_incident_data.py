"""The incident view's data: `phi-audit report`'s list, from the verified trail, split by day.

Trails are written by the real chain and sink; the reference is the real `phi-audit report`
(as a process, byte for byte) or the report's own `build_report` over every event.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

import pytest
from evidence_trails import (
    append,
    phi_audit,
    request,
    tamper_subject,
    trail_events,
    wait_for_file,
    write_config,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.audit.report import ReportFilter, build_report, render_report
from proxy.console import trail_reader
from proxy.console.incident import (
    IncidentQuery,
    IncidentQueryError,
    incident_report,
    load_incident,
)

NURSE = "https://idp.test|nurse"
OTHER = "https://idp.test|other"


def _day(n: int, hour: int = 9) -> str:
    return f"2026-03-{n:02d}T{hour:02d}:15:00.000Z"


@pytest.fixture
def incident_trail(tmp_path):
    """Nurse reads records of two practices over four days; someone else reads one too."""
    config = write_config(tmp_path)
    append(
        config,
        [
            request(_day(1), NURSE, {"practice-a": {"p-1": ["ssn"], "p-2": ["ssn", "history"]}}),
            request(_day(1, 14), NURSE, {"practice-a": {"p-1": ["ssn"]}}),
            request(_day(2), NURSE, {"practice-b": {"=HYPERLINK(1)": ["insurance_id"]}}),
            request(_day(2), OTHER, {"practice-a": {"p-9": ["ssn"]}}),
            request(_day(4), NURSE, {"practice-a": {"p-3": ["history"]}}, unnamed={"ssn": 1}),
            request(_day(9), NURSE, {"practice-b": {"p-4": ["ssn"]}}),
        ],
    )
    return config


def _cli_csv(config, query: IncidentQuery) -> bytes:
    argv = query.command()[1:]  # without the program name
    done = phi_audit(config, *argv)
    assert done.returncode in {0, 1}, done.stderr
    return done.stdout


class TestQuery:
    def test_times_read_as_phi_audit_reads_them(self):
        """A date is midnight UTC, a zone is converted; the window is [from, until)."""
        query = IncidentQuery.parse(f" {NURSE} ", "2026-03-01", "2026-03-08T02:00+02:00")
        assert query.subject == NURSE
        assert query.since == datetime(2026, 3, 1, tzinfo=UTC)
        assert query.until == datetime(2026, 3, 8, tzinfo=UTC)
        assert query.command() == [
            "phi-audit",
            "report",
            "--subject",
            NURSE,
            "--since",
            "2026-03-01T00:00:00.000Z",
            "--until",
            "2026-03-08T00:00:00.000Z",
            "--format",
            "csv",
        ]

    @pytest.mark.parametrize(
        ("subject", "since", "until", "says"),
        [
            ("", "", "", "subject: enter the person's subject"),
            ("idp|a\x1b[2J", "", "", "printable characters"),
            (NURSE, "yesterday", "", "from: 'yesterday' is not a date or time"),
            (NURSE, "2026-03-02", "2026-03-01", "until: must be after from"),
        ],
    )
    def test_a_wrong_form_is_refused_saying_what_to_enter(self, subject, since, until, says):
        with pytest.raises(IncidentQueryError, match=says):
            IncidentQuery.parse(subject, since, until)

    def test_the_download_name_holds_only_safe_characters(self):
        query = IncidentQuery.parse('idp|"a/../b\r\n', "2026-03-01", "2026-03-08")
        name = query.filename()
        assert name == "notification-list_a_b_20260301T0000Z-20260308T0000Z.csv"
        assert IncidentQuery.parse(NURSE).filename() == "notification-list_nurse.csv"


class TestIncidentReport:
    def test_the_csv_is_byte_for_byte_what_phi_audit_report_prints(self, incident_trail):
        """The same subject and window give the very bytes of `phi-audit report --format csv`."""
        query = IncidentQuery.parse(NURSE, "2026-03-01", "2026-03-05")
        incident = incident_report(incident_trail, query)
        assert incident.verification.verified
        assert incident.csv().encode() == _cli_csv(incident_trail, query)
        records = [(r.practice, r.record) for r in incident.rows]
        assert ("practice-b", "=HYPERLINK(1)") in records
        assert ("practice-b", "p-4") not in records  # the 9th is outside the window
        assert "'=HYPERLINK(1)" in incident.csv()  # the report's formula guard, kept

    def test_disclosures_per_day_per_practice_add_up_to_the_list(self, incident_trail):
        query = IncidentQuery.parse(NURSE, "2026-03-01", "2026-03-05")
        incident = incident_report(incident_trail, query)
        assert incident.per_day == {
            ("2026-03-01", "practice-a"): 4,
            ("2026-03-02", "practice-b"): 1,
            ("2026-03-04", "practice-a"): 2,
        }
        assert sum(incident.per_day.values()) == incident.disclosures == 7
        assert incident.records == 4  # p-1, p-2, p-3 and the formula-named one; unknown not
        chart = incident.chart()
        assert chart.buckets == ("2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04")
        assert [s.label for s in chart.series] == ["practice-a", "practice-b"]
        assert chart.series[0].values == (4, 0, 0, 2)
        assert chart.totals() == [4, 1, 0, 2]

    def test_without_a_window_the_chart_spans_the_days_with_disclosures(self, incident_trail):
        incident = incident_report(incident_trail, IncidentQuery.parse(NURSE))
        chart = incident.chart()
        assert chart.buckets[0] == "2026-03-01"
        assert chart.buckets[-1] == "2026-03-09"
        assert sum(chart.totals()) == incident.disclosures == 8
        assert incident.csv().encode() == _cli_csv(incident_trail, IncidentQuery.parse(NURSE))

    def test_a_long_window_is_drawn_in_weeks(self, incident_trail):
        query = IncidentQuery.parse(NURSE, "2026-01-01", "2026-06-30")
        chart = incident_report(incident_trail, query).chart()
        assert chart.buckets[0] == "week of 2026-01-01"
        assert len(chart.buckets) == 26
        assert sum(chart.totals()) == 8

    def test_an_odd_time_in_an_edited_trail_still_charts(self, tmp_path):
        """A bare date sorts before the window's end as text; its day is drawn, not a crash."""
        config = write_config(tmp_path)
        append(config, [request("2026-03-05", NURSE, {"practice-a": {"p-1": ["ssn"]}})])
        query = IncidentQuery.parse(NURSE, "2026-03-01", "2026-03-05")
        incident = incident_report(config, query)
        assert incident.per_day == {("2026-03-05", "practice-a"): 1}
        chart = incident.chart()
        assert chart.buckets[-1] == "2026-03-05"
        assert sum(chart.totals()) == 1
        assert incident.csv().encode() == _cli_csv(config, query)

    def test_a_tampered_trail_is_reported_broken_and_nothing_read_is_hidden(self, incident_trail):
        """An edited event fails verification (file:line named); the list still shows it all.

        `phi-audit report` prints the same list and exits 1; the page must say the same.
        """
        events = trail_events(incident_trail)
        line = next(
            n for n, e in enumerate(events, 1) if e.get("subject") == OTHER
        )  # OTHER's read becomes the nurse's: an edit made to frame someone
        path = tamper_subject(incident_trail, line, NURSE)
        query = IncidentQuery.parse(NURSE, "2026-03-01", "2026-03-05")
        incident = incident_report(incident_trail, query)
        verification = incident.verification
        assert verification.state == "broken"
        assert not verification.verified
        assert verification.problem is not None
        assert verification.problem.startswith(f"{path}:{line}: ")
        assert verification.summary().startswith("BROKEN: ")
        assert ("practice-a", "p-9") in [(r.practice, r.record) for r in incident.rows]
        cli = phi_audit(incident_trail, *query.command()[1:])
        assert cli.returncode == 1
        assert incident.csv().encode() == cli.stdout
        assert verification.problem.encode() in cli.stderr

    def test_no_readable_trail_is_said_not_raised(self, tmp_path):
        config = tmp_path / "config.yaml"
        config.write_text("audit:\n  enabled: false\n")
        incident = incident_report(config, IncidentQuery.parse(NURSE))
        assert incident.verification.state == "unreadable"
        assert "audit.enabled is false" in (incident.verification.problem or "")
        assert incident.rows == []
        (tmp_path / "empty").mkdir()
        gone = incident_report(write_config(tmp_path / "empty"), IncidentQuery.parse(NURSE))
        assert gone.verification.state == "unreadable"
        assert "no audit trail found there" in (gone.verification.problem or "")


class TestOffTheEventLoop:
    async def test_the_trail_is_read_in_the_reader_process_while_the_loop_serves(
        self, incident_trail, tmp_path
    ):
        """With the reader busy, the loop still runs other tasks; the load then completes."""
        gate = tmp_path / "open"
        loop = asyncio.get_running_loop()
        busy = loop.run_in_executor(trail_reader._READER.pool(), partial(wait_for_file, str(gate)))
        task = asyncio.create_task(load_incident(incident_trail, IncidentQuery.parse(NURSE)))
        served = 0
        for _ in range(20):
            await asyncio.sleep(0)
            served += 1
        assert served == 20
        assert not task.done()  # queued behind the busy reader, not run on the loop
        gate.touch()
        await busy
        incident = await task
        assert incident.disclosures == 8


_practices = st.sampled_from(["practice-a", "practice-b", "pr\u202ec"])
_records = st.sampled_from(["p-1", "p-2", "-2+3", "p\x1b[2J", "p-5"])
_classes = st.lists(st.sampled_from(["ssn", "history", "insurance_id"]), min_size=1, unique=True)
_event = st.builds(
    lambda day, hour, who, disclosed, unnamed: request(
        _day(day, hour),
        who,
        disclosed,
        unnamed={"history": 1} if unnamed else None,
    ),
    st.integers(1, 28),
    st.integers(0, 23),
    st.sampled_from([NURSE, OTHER]),
    st.dictionaries(_practices, st.dictionaries(_records, _classes, max_size=3), max_size=2),
    st.booleans(),
)


class TestAgainstTheReport:
    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        events=st.lists(_event, min_size=1, max_size=25),
        since=st.one_of(st.none(), st.integers(1, 28)),
        length=st.integers(1, 30),
    )
    def test_rows_and_days_equal_the_report_over_every_event(
        self, tmp_path_factory, events, since, length
    ):
        """For any trail and window: the rows are `build_report`'s, and the days sum to them."""
        config = write_config(tmp_path_factory.mktemp("prop"))
        append(config, events)
        start = None if since is None else f"2026-03-{since:02d}"
        end = None if since is None else min(since + length, 31)
        query = IncidentQuery.parse(NURSE, start or "", f"2026-03-{end:02d}" if end else "")
        incident = incident_report(config, query)
        assert incident.verification.verified
        where = ReportFilter(subject=NURSE, since=query.since, until=query.until)
        expected = build_report(trail_events(config), where)
        assert incident.rows == expected
        assert incident.csv() == render_report(expected, "csv") + "\n"
        assert sum(incident.per_day.values()) == incident.disclosures
        assert sum(incident.chart().totals()) == incident.disclosures
        assert incident.undated == 0

    @settings(
        max_examples=20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        times=st.lists(
            st.sampled_from(
                [
                    "2026-03-05",
                    "",
                    "zzz",
                    "2026-13-01T00:00:00.000Z",
                    "2026-03-02T10:00:00.000Z",
                    "2026-03-0",
                    "2025-12-31T23:59:59.999Z",
                ]
            ),
            min_size=1,
            max_size=8,
        ),
        window=st.sampled_from([("", ""), ("2026-03-01", "2026-03-05"), ("2026-01-01", "")]),
    )
    def test_any_event_time_is_charted_or_counted_undated_never_lost(
        self, tmp_path_factory, times, window
    ):
        """Times only an edited trail holds: the chart and the undated count add up to the list."""
        config = write_config(tmp_path_factory.mktemp("odd"))
        append(config, [request(ts, NURSE, {"practice-a": {"p-1": ["ssn"]}}) for ts in times])
        incident = incident_report(config, IncidentQuery.parse(NURSE, *window))
        assert sum(incident.chart().totals()) + incident.undated == incident.disclosures

"""The break-glass and incident pages rendered directly, for data no browser test makes.

Values come from the views' own builders (`queue_values`, `incident_values`), so a page here is
the page the console serves for that data, without a proxy, a trail or a browser.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.audit.report import ReportRow
from proxy.console.app import templates
from proxy.console.break_glass_queue import BreakGlassQueue, QueueEntry
from proxy.console.incident import Incident, IncidentQuery
from proxy.console.nav import NAV
from proxy.console.trail_pass import Verification
from proxy.console.views.break_glass import queue_values
from proxy.console.views.incident import incident_values
from proxy.grants.break_glass_model import BreakGlassUse, SignOff
from proxy.grants.model import Grant
from proxy.identity.subject import Subject

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
CONFIG = Path("/etc/phi-proxy/config.yaml")


def _page(template: str, path: str, **values) -> str:
    return (
        templates()
        .get_template(template)
        .render(nav=NAV, path=path, session=None, csrf_field="csrf", csrf="c", title="t", **values)
    )


def _incident(verification: Verification, rows: list[ReportRow]) -> str:
    query = IncidentQuery.parse("https://idp.test|nurse", "2026-03-01", "2026-03-05")
    per_day = {("2026-03-02", r.practice): r.count for r in rows}
    incident = Incident(query, verification, rows, per_day)
    form = {"subject": query.subject, "since": "2026-03-01", "until": "2026-03-05"}
    values = {"form": form, "error": None, "error_field": None}
    return _page(
        "incident.html", "/console/incident", **values, **incident_values(incident, form, CONFIG)
    )


def _row(record: str, practice: str = "practice-a") -> ReportRow:
    ts = "2026-03-02T10:00:00.000Z"
    return ReportRow("https://idp.test|nurse", practice, record, "ssn", 1, ts, ts)


class TestIncidentPage:
    def test_a_trail_that_cannot_be_read_is_said_and_nothing_is_claimed(self):
        page = _incident(Verification("unreadable", problem="audit.enabled is false"), [])
        assert "The audit trail could not be read" in page
        assert "audit.enabled is false" in page
        assert 'role="alert"' in page
        assert "Audit trail verified" not in page
        assert "as far as the trail that could be read says" in page

    def test_record_ids_are_escaped_and_invisible_characters_shown(self):
        rows = [_row("<script>alert(1)</script>"), _row("p\u202e-7", "pr<b>c")]
        verified = Verification("verified", events=9, first_seq=1, last_seq=9, location="1 file(s)")
        page = _incident(verified, rows)
        assert "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "\u202e" not in page
        assert "p\\u202e-7" in page
        assert "<b>c" not in page
        assert "Audit trail verified" in page

    def test_the_shell_command_is_quoted_for_a_shell(self):
        verified = Verification("verified", events=1, first_seq=1, last_seq=1, location="x")
        page = _incident(verified, [_row("p-1")])
        assert (
            "phi-audit -c /etc/phi-proxy/config.yaml report --subject "
            "&#39;https://idp.test|nurse&#39; --since 2026-03-01T00:00:00.000Z"
        ) in page


def _use(
    sub: str, practice: str, *, reason: str, opened: datetime, signoff: SignOff | None = None
) -> BreakGlassUse:
    grant = Grant(
        id=f"bg_{abs(hash((sub, practice))) % 16**16:016x}",
        subject=Subject("https://idp.test", sub),
        practice=practice,
        field_classes=frozenset({"ssn"}),
        not_before=opened,
        expires_at=opened + timedelta(hours=1),
        revoked_at=None,
        created_by="break-glass",
        reason=reason,
        created_at=opened,
    )
    return BreakGlassUse(grant, signoff)


class TestBreakGlassPage:
    def test_an_overdue_use_is_marked_and_its_reason_escaped(self):
        late = _use("medic", "practice-a", reason="<img src=x> ER", opened=NOW - timedelta(days=4))
        entry = QueueEntry(
            late, overdue=True, disclosed=[_row("<i>p-1</i>")], requests=60, request_ids=("r-1",)
        )
        queue = BreakGlassQueue([entry], [], timedelta(days=3), NOW, None, 0)
        page = _page("break_glass.html", "/console/break-glass", **queue_values(queue))
        assert "Overdue" in page
        assert "<img src=x>" not in page
        assert "&lt;img src=x&gt; ER" in page
        assert "&lt;i&gt;p-1&lt;/i&gt;" in page
        assert "Sign off each use within 3 days." in page
        assert "Request ids, for your IT team (1 of 60)" in page
        assert f'action="/console/break-glass/{late.id}/acknowledge"' in page
        assert 'name="csrf" value="c"' in page

    def test_only_the_newest_sign_offs_are_listed_and_that_is_said(self):
        signed = _use(
            "nurse",
            "practice-c",
            reason="night shift, GP unreachable",
            opened=NOW - timedelta(days=1),
            signoff=SignOff(NOW, "https://idp.test|officer", "confirmed with the rota"),
        )
        queue = BreakGlassQueue(
            [], [QueueEntry(signed, overdue=False, disclosed=[])], timedelta(days=3), NOW, None, 7
        )
        page = _page("break_glass.html", "/console/break-glass", **queue_values(queue, signed.id))
        assert "No emergency access awaits sign-off." in page
        assert "Signed off: 7" in page
        assert "The 1 most recent are listed" in page
        assert "Signed off: nurse's emergency access to practice-c" in page

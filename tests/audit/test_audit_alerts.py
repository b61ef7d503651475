"""Alerts stay quiet under a loop: one line per request, bounded lists, one per subject a minute.

The audit trail is not throttled: every request still leaves its event.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import MappingProxyType

import orjson
import pytest
from audit_helpers import written

from proxy.accesslog import AccessRecord
from proxy.audit.alerts import (
    MAX_LISTED,
    THROTTLED,
    AlertLimiter,
    RequestAlerts,
    integrity_fields,
    lapsed_fields,
)
from proxy.audit.events import CanaryTouch
from proxy.audit.settings import AlertSettings
from proxy.grants import Access
from proxy.identity import Subject
from proxy.transform import TransformStats
from proxy.transform.stats import MAX_INTEGRITY_EVENTS


def record(subject: str | None = "iss|carol", request_id: str = "r1") -> AccessRecord:
    return AccessRecord(request_id, "GET", "/p", "127.0.0.1", 0.0, subject=subject)


def lapsed_access(**lapsed: tuple[str, ...]) -> Access:
    return Access(Subject("iss", "carol"), lapsed=MappingProxyType(lapsed))


def alert_lines(caplog, name):
    return [r.fields for r in caplog.records if r.name == "phi_proxy.alert" and r.msg == name]


class TestAlertLimiter:
    def test_first_line_passes_repeats_within_the_interval_are_held_back(self):
        """One line per (alert, subject) per interval; the next one reports what was held."""
        limiter = AlertLimiter(interval=60.0)
        assert limiter.admit("lapsed_grant_use", "s", 0.0) == 0
        assert [limiter.admit("lapsed_grant_use", "s", t) for t in (1.0, 30.0, 59.9)] == [None] * 3
        assert limiter.admit("lapsed_grant_use", "s", 60.0) == 3
        assert limiter.admit("lapsed_grant_use", "s", 61.0) is None
        assert limiter.admit("lapsed_grant_use", "s", 200.0) == 1

    def test_subjects_and_alerts_are_limited_apart(self):
        """Another subject, or another alert of the same subject, has its own allowance."""
        limiter = AlertLimiter(interval=60.0)
        assert limiter.admit("lapsed_grant_use", "a", 0.0) == 0
        assert limiter.admit("lapsed_grant_use", "b", 0.0) == 0
        assert limiter.admit("integrity_failure", "a", 0.0) == 0
        assert limiter.admit("integrity_failure", None, 0.0) == 0  # anonymous callers: one key

    def test_memory_is_bounded_by_forgetting_the_least_recent_subject(self):
        """Past max_subjects, the oldest subject is forgotten (its next line passes at once)."""
        limiter = AlertLimiter(interval=60.0, max_subjects=2)
        for subject in ("a", "b", "c"):
            assert limiter.admit("x", subject, 0.0) == 0
        assert len(limiter._slots) == 2
        assert limiter.admit("x", "a", 1.0) == 0  # forgotten
        assert limiter.admit("x", "c", 1.0) is None  # remembered


class TestLineContents:
    def test_lapsed_line_lists_at_most_max_listed_grant_ids_and_counts_all(self):
        """A subject with 25 lapsed grants: 10 ids listed, the count says 25."""
        ids = tuple(f"g_{n:02d}" for n in range(25))
        stats = TransformStats(withheld={"practice-a", "practice-b"})
        fields = lapsed_fields(stats, lapsed_access(**{"practice-a": ids}))
        assert fields == {
            "practices": ["practice-a"],
            "practice_count": 1,
            "lapsed_grant_ids": list(ids[:MAX_LISTED]),
            "lapsed_grant_count": 25,
        }

    def test_no_lapsed_line_without_a_withheld_practice_with_lapsed_grants(self):
        """Masked for a practice the caller never held a grant at: not a lapse."""
        stats = TransformStats(withheld={"practice-b"})
        assert lapsed_fields(stats, lapsed_access(**{"practice-a": ("g_1",)})) is None

    def test_integrity_line_counts_reasons_and_lists_distinct_kids(self):
        """83 failures of 12 key ids: counts by reason, 10 kids listed, 12 counted."""
        stats = TransformStats()
        for n in range(83):
            stats.integrity(f"{n % 12:016x}", "unknown-kid" if n % 2 else "not-authentic")
        stats.integrity(None, "malformed")
        fields = integrity_fields(stats)
        assert fields is not None
        assert fields["failures"] == 84
        assert fields["reasons"] == {"malformed": 1, "not-authentic": 42, "unknown-kid": 41}
        assert fields["unclassified"] == 0
        assert len(fields["kids"]) == MAX_LISTED
        assert fields["kid_count"] == 12

    def test_failures_beyond_those_the_transform_describes_are_unclassified(self):
        """The transform describes the first MAX_INTEGRITY_EVENTS; the rest are counted."""
        stats = TransformStats()
        for _ in range(MAX_INTEGRITY_EVENTS + 5):
            stats.integrity("00000000000000aa", "unknown-kid")
        fields = integrity_fields(stats)
        assert fields is not None
        assert fields["failures"] == MAX_INTEGRITY_EVENTS + 5
        assert fields["reasons"] == {"unknown-kid": MAX_INTEGRITY_EVENTS}
        assert fields["unclassified"] == 5


class TestRequestAlerts:
    def alerts(self) -> RequestAlerts:
        return RequestAlerts(repeat_interval=60.0, burst_threshold=50, burst_window=60.0)

    def test_a_looping_subject_gets_one_line_per_interval_with_the_held_back_count(self, caplog):
        """1,000 lapsed requests in a minute: one line; the first after it says 999 held back."""
        caplog.set_level(logging.WARNING, "phi_proxy.alert")
        alerts = self.alerts()
        stats = TransformStats(withheld={"practice-a"})
        access = lapsed_access(**{"practice-a": ("g_1",)})
        for n in range(1000):
            alerts.lapsed(record(request_id=f"r{n}"), stats, access, now=n * 0.05)
        alerts.lapsed(record(request_id="late"), stats, access, now=61.0)
        lines = alert_lines(caplog, "lapsed_grant_use")
        assert [(line["request_id"], line["suppressed"]) for line in lines] == [
            ("r0", 0),
            ("late", 999),
        ]
        assert lines[0]["subject"] == "iss|carol"

    def test_integrity_failures_are_one_line_per_request(self, caplog):
        """Seven requests with a dozen bad tokens each: one line, not 84."""
        caplog.set_level(logging.WARNING, "phi_proxy.alert")
        alerts = self.alerts()
        for n in range(7):
            stats = TransformStats()
            for _ in range(12):
                stats.integrity("00000000000000aa", "unknown-kid")
            alerts.integrity(record(request_id=f"r{n}"), stats, now=float(n))
        (line,) = alert_lines(caplog, "integrity_failure")
        assert line["failures"] == 12
        assert line["suppressed"] == 0

    def test_only_caller_driven_alerts_are_throttled(self):
        """The held-back alerts are those a caller can repeat at will; never the KEK's.

        A break-glass use that opens a new grant is not held back (RequestAlerts.break_glass).
        """
        assert (
            frozenset(
                {
                    "lapsed_grant_use",
                    "integrity_failure",
                    "canary_touched",
                    "break_glass_use",
                    "break_glass_refused",
                    "break_glass_without_claim",
                }
            )
            == THROTTLED
        )
        assert not {"kek_unavailable", "kek_available", "key_usage_high"} & THROTTLED

    def test_repeat_interval_is_a_setting_defaulting_to_a_minute(self):
        """audit.alerts.repeat_interval_seconds: 60 s unless configured; must be positive."""
        assert AlertSettings().repeat_interval_seconds == 60.0
        with pytest.raises(ValueError, match="repeat_interval_seconds"):
            AlertSettings(repeat_interval_seconds=0)


def _events(env):
    lines = (env.folder / "audit.jsonl").read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e["type"] == "request"]


class TestRunningProxy:
    async def test_a_revoked_user_looping_writes_one_alert_and_every_audit_event(
        self, audit_env, caplog
    ):
        """40 requests after revocation: one lapsed_grant_use line, 40 audit events."""
        grant = await audit_env.grant("carol", "practice-a")
        await audit_env.grants.revoke(
            grant_id=grant.id, by="tests", reason="left", now=datetime.now(UTC)
        )
        doc = {"practice_id": "practice-a", "patient_id": "p1"}
        doc["ssn"] = audit_env.encrypt("practice-a", "ssn", "321-54-0001")
        audit_env.portal.script("/api/patients/p1", orjson.dumps(doc))
        for _ in range(40):
            assert (await audit_env.get("/api/patients/p1", sub="carol")).status == 200
        await written(audit_env)
        (line,) = alert_lines(caplog, "lapsed_grant_use")
        assert line["lapsed_grant_ids"] == [grant.id]
        assert line["practices"] == ["practice-a"]
        events = _events(audit_env)
        assert len(events) == 40
        assert all(e["lapsed_practices"] == ["practice-a"] for e in events)

    async def test_a_page_of_unopenable_tokens_is_one_alert_line(self, audit_env, caplog):
        """30 tokens under 15 unknown key ids in one answer: one line, 10 kids, full counts."""
        real = audit_env.encrypt("practice-a", "ssn", "321-54-0002")
        prefix, mode, _kid, rest = real.split(".", 3)
        rows = [
            {"practice_id": "practice-a", "patient_id": f"p{n}"}
            | {"ssn": ".".join((prefix, mode, f"{n % 15:016x}", rest))}
            for n in range(30)
        ]
        audit_env.portal.script("/api/patients", orjson.dumps({"patients": rows}))
        response = await audit_env.get("/api/patients", sub="alice")
        assert response.status == 200
        (line,) = alert_lines(caplog, "integrity_failure")
        assert line["failures"] == 30
        assert line["reasons"] == {"unknown-kid": 30}
        assert len(line["kids"]) == MAX_LISTED
        assert line["kid_count"] == 15
        assert line["request_id"] == response.headers["X-Request-Id"]


class TestCanaryAlert:
    def test_one_line_per_request_lists_at_most_ten_touches_with_the_count(self, caplog):
        """Twelve distinct touches (and a repeat): one error line, ten listed, all counted."""
        caplog.set_level(logging.WARNING, "phi_proxy.alert")
        alerts = RequestAlerts(repeat_interval=60, burst_threshold=50, burst_window=60)
        touches = [CanaryTouch(f"c_{i:016x}", "practice-a", "ssn", "masked") for i in range(12)]
        alerts.canary(record(), [*touches, touches[0]], now=0.0)
        (line,) = alert_lines(caplog, "canary_touched")
        assert line["touch_count"] == 12
        assert line["touches"] == [t.to_json() for t in touches[:MAX_LISTED]]
        assert line["suppressed"] == 0
        assert [r.levelname for r in caplog.records] == ["ERROR"]

    def test_a_subject_looping_on_a_canary_is_held_back_and_counted(self, caplog):
        """At once the first time, then one line per interval whose `suppressed` counts the rest."""
        caplog.set_level(logging.WARNING, "phi_proxy.alert")
        alerts = RequestAlerts(repeat_interval=60, burst_threshold=50, burst_window=60)
        touch = [CanaryTouch("c_0123456789abcdef", "practice-a", "ssn", "disclosed")]
        for second in range(0, 61, 10):
            alerts.canary(record(request_id=f"r{second}"), touch, now=float(second))
        first, second = alert_lines(caplog, "canary_touched")
        assert (first["request_id"], first["suppressed"]) == ("r0", 0)
        assert (second["request_id"], second["suppressed"]) == ("r60", 5)

"""Break-glass alert lines: a new emergency grant is never held back; repeats are bounded."""

from __future__ import annotations

import logging

from proxy.accesslog import AccessRecord
from proxy.audit.alerts import MAX_LISTED, RequestAlerts

ALERT = "phi_proxy.alert"


def record(subject: str | None = "iss|medic") -> AccessRecord:
    return AccessRecord("r1", "GET", "/p", "127.0.0.1", 0.0, subject=subject)


def alerts() -> RequestAlerts:
    return RequestAlerts(repeat_interval=60.0, burst_threshold=3, burst_window=60.0)


def lines(caplog, name):
    return [r.fields for r in caplog.records if r.name == ALERT and r.msg == name]


def use(outcome: str, grant_ids=("bg_1",)) -> dict:
    return {"outcome": outcome, "grant_ids": list(grant_ids), "reasons": ["x" * 20]}


class TestBreakGlassAlerts:
    def test_every_new_grant_alerts_even_within_the_interval(self, caplog):
        """Three new grants in one second: three lines, none held back."""
        caplog.set_level(logging.WARNING, logger=ALERT)
        sink = alerts()
        for second in (0.0, 0.5, 1.0):
            sink.break_glass(record(), use("granted"), second)
        assert [line["new_grant"] for line in lines(caplog, "break_glass_use")] == [True] * 3

    def test_uses_under_an_existing_grant_are_throttled_and_counted(self, caplog):
        """Later disclosures under the grant: one line a minute, then the held-back count."""
        caplog.set_level(logging.WARNING, logger=ALERT)
        sink = alerts()
        for second in (0.0, 1.0, 2.0, 61.0):
            sink.break_glass(record(), use("in_effect"), second)
        assert [line["suppressed"] for line in lines(caplog, "break_glass_use")] == [0, 2]

    def test_the_listed_grant_ids_are_bounded(self, caplog):
        """At most MAX_LISTED ids, with the full count."""
        caplog.set_level(logging.WARNING, logger=ALERT)
        ids = [f"bg_{n:02d}" for n in range(25)]
        alerts().break_glass(record(), use("in_effect", ids), 0.0)
        [line] = lines(caplog, "break_glass_use")
        assert len(line["grant_ids"]) == MAX_LISTED
        assert line["grant_count"] == 25

    def test_refusals_and_missing_claims_have_their_own_lines(self, caplog):
        """A refused caller and a caller without the claim are named, each throttled."""
        caplog.set_level(logging.WARNING, logger=ALERT)
        sink = alerts()
        sink.break_glass(record(), use("refused_limit", ()), 0.0)
        sink.break_glass(record(), use("refused_limit", ()), 1.0)
        sink.break_glass(record(None), use("unauthorized", ()), 0.0)
        assert [line["outcome"] for line in lines(caplog, "break_glass_refused")] == [
            "refused_limit"
        ]
        [claimless] = lines(caplog, "break_glass_without_claim")
        assert claimless["subject"] is None

    def test_allowed_requests_that_needed_nothing_are_quiet(self, caplog):
        """The header from an allowed caller who was withheld nothing raises no alert."""
        caplog.set_level(logging.WARNING, logger=ALERT)
        sink = alerts()
        for outcome in ("not_needed", "other_practice"):
            sink.break_glass(record(), use(outcome, ()), 0.0)
        assert [r for r in caplog.records if r.name == ALERT] == []

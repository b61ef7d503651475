"""Console templates rendered directly: what a page says about data no other test makes."""

from __future__ import annotations

from proxy.console.app import templates
from proxy.console.nav import NAV
from proxy.console.views.review import LAST_USE_WORDS


def _review(**document):
    base = {
        "generated_at": "2026-12-07T10:00:00Z",
        "usage": {"status": "verified", "reason": None},
        "grants": [],
        "findings": [],
        "break_glass": {"signoff_within": "3d", "awaiting_signoff": []},
        "scim_unmapped_groups": [],
        "checks": {"max_ttl": "90d", "unused_for": "30d"},
    }
    return (
        templates()
        .get_template("review.html")
        .render(
            nav=NAV,
            path="/console/review",
            session=None,
            csrf_field="csrf",
            csrf=None,
            title="Access review",
            review={**base, **document},
            findings=[],
            practice="",
            expiring_within="14d",
            unused_for="30d",
            csv_href="/console/review.csv",
            defaults=None,
            last_use_words=LAST_USE_WORDS,
        )
    )


def test_scim_groups_that_grant_nothing_are_listed_as_information_escaped():
    page = _review(scim_unmapped_groups=["Night shift", "<b>Locums</b>"])
    assert "For information: groups that grant nothing" in page
    assert "Night shift" in page
    assert "&lt;b&gt;Locums&lt;/b&gt;" in page
    assert "<b>Locums</b>" not in page


def test_a_trail_that_cannot_be_read_is_said_plainly():
    page = _review(usage={"status": "unknown", "reason": "audit.jsonl: broken chain at line 7"})
    assert "Last use: unknown" in page
    assert "broken chain at line 7" in page
    assert "No findings: nothing needs a decision now." in page

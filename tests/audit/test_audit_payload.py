"""The fast audit payload seals to exactly the line the reference RequestEvent would (format 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.accesslog import AccessRecord
from proxy.audit.chain import Chain, Head
from proxy.audit.events import CANARY_HOW, CanaryTouch
from proxy.audit.records import disclosed_records
from proxy.audit.requests import AuditState, RequestAuditor
from proxy.audit.secrets import ChainKey
from proxy.audit.settings import AlertSettings
from proxy.grants import NO_ACCESS
from proxy.grants.model import Access, PracticeAccess
from proxy.identity import Subject
from proxy.transform import TransformStats

_FIXED = datetime(2026, 3, 2, 14, 3, 11, 402000, tzinfo=UTC)
_PRACTICES = ("practice-a", "practice-b", "pr\u00e9")
_CLASSES = ("ssn", "insurance_id", "history")
_CHAIN = Chain(ChainKey(b"k" * 32), checkpoint_every=1000)


def _auditor():
    return RequestAuditor(None, AlertSettings(), clock=lambda: _FIXED)


def _record():
    return AccessRecord("9f2c41d07a3be815", "GET", "/api/patients/7", "10.0.4.7", 0.0, "i|s")


def _access():
    return Access(
        Subject("https://idp.test", "u"),
        MappingProxyType(
            {
                "practice-a": PracticeAccess(
                    all_fields=True, field_classes=frozenset(), grant_ids=("g2", "g1")
                )
            }
        ),
        MappingProxyType({"practice-b": ("g9",)}),
    )


def _sealed(payload):
    line, _ = _CHAIN.seal(payload, Head.empty())
    return line


_disclosure = st.tuples(
    st.sampled_from(_PRACTICES),
    # a small alphabet, so records collect several classes and groups share class sets
    st.one_of(st.none(), st.text(alphabet="ab1\u00e9", max_size=3), st.text(max_size=6)),
    st.one_of(st.none(), st.sampled_from(_CLASSES)),
)


class TestPayloadMatchesReference:
    @settings(max_examples=60, deadline=None)
    @given(
        st.lists(_disclosure, max_size=25),
        st.lists(st.sampled_from(_PRACTICES), max_size=3),
        st.lists(st.sampled_from(_CLASSES), max_size=4),
        st.booleans(),
        st.lists(
            st.builds(
                CanaryTouch,
                st.sampled_from(["c_0123456789abcdef", "c_fedcba9876543210"]),
                st.sampled_from(_PRACTICES),
                st.sampled_from(_CLASSES),
                st.sampled_from(CANARY_HOW),
            ),
            max_size=5,
        ),
    )
    def test_same_line_as_the_event_dataclass(
        self, disclosures, withheld, masked, granted, touches
    ):
        """For any disclosures the fast payload and RequestEvent.to_json seal to the same bytes."""
        stats = TransformStats()
        for practice, record_id, field_class in disclosures:
            stats.disclosed(practice, record_id, field_class)
            if field_class is not None:
                stats.decrypted[field_class] += 1
        for practice in withheld:
            stats.withheld.add(practice)
        for field_class in masked:
            stats.masked[field_class] += 1
        into = TransformStats()
        into.encrypted["ssn"] += 2
        state = AuditState(
            response_stats=stats,
            request_stats=into,
            access=_access() if granted else NO_ACCESS,
            canary=list(touches),
        )
        auditor, record = _auditor(), _record()
        fast = auditor._payload(record, state, 200, "forwarded")
        reference = auditor._event(record, state, 200, "forwarded").to_json()
        line = _sealed(fast)
        assert _sealed(reference) == line
        event = orjson.loads(line)
        assert event["v"] == 2
        named = sorted(disclosed_records(event))
        assert named == sorted((p, r, sorted(c)) for (p, r), c in stats.disclosures.items() if c)
        keys = [(g["practice"], tuple(g["field_classes"])) for g in event["records"]]
        assert keys == sorted(set(keys)), "one group per (practice, classes), sorted"
        # The `canary` key only when there is a touch: every other event keeps its bytes.
        assert event.get("canary", []) == [t.to_json() for t in sorted(set(touches))]

    def test_records_are_grouped_sorted_and_only_with_classes(self):
        """A group per (practice, class set), all sorted; a record without a class is not named."""
        stats = TransformStats()
        stats.disclosed("practice-b", "p9", "ssn")
        stats.disclosed("practice-a", "p2", "ssn")
        stats.disclosed("practice-a", "p4", "history")
        stats.disclosed("practice-a", "p4", "ssn")
        stats.disclosed("practice-a", "p1", "ssn")
        stats.disclosed("practice-a", "p1", "history")
        stats.disclosed("practice-a", "p3", None)
        state = AuditState(response_stats=stats, access=NO_ACCESS)
        line = _sealed(_auditor()._payload(_record(), state, 200, "forwarded"))
        assert orjson.loads(line)["records"] == [
            {
                "practice": "practice-a",
                "field_classes": ["history", "ssn"],
                "records": ["p1", "p4"],
            },
            {"practice": "practice-a", "field_classes": ["ssn"], "records": ["p2"]},
            {"practice": "practice-b", "field_classes": ["ssn"], "records": ["p9"]},
        ]

    def test_no_response_stats_gives_empty_lists(self):
        """A refused write (no response transform) still seals like the reference event."""
        state = AuditState(write_route="/api/bookings")
        auditor, record = _auditor(), _record()
        fast = auditor._payload(record, state, 403, "request_rejected")
        reference = auditor._event(record, state, 403, "request_rejected").to_json()
        assert _sealed(reference) == _sealed(fast)
        assert orjson.loads(_sealed(fast))["records"] == []

    def test_break_glass_seals_like_the_reference_and_only_when_it_played_a_part(self):
        """A disclosure through a bg_ grant carries `break_glass`; an ordinary one has no key."""
        from proxy.break_glass_gate import BreakGlassAsk

        stats = TransformStats()
        stats.disclosed("practice-a", "p1", "ssn")
        stats.decrypted["ssn"] += 1
        emergency = Access(
            Subject("https://idp.test", "u"),
            MappingProxyType(
                {
                    "practice-a": PracticeAccess(
                        all_fields=False, field_classes=frozenset({"ssn"}), grant_ids=("bg_1",)
                    )
                }
            ),
            break_glass=MappingProxyType({"bg_1": "unconscious patient in ER, allergies"}),
        )
        ask = BreakGlassAsk(authorized=True, outcome="granted", reason="r" * 20)
        ask.practice = "practice-a"
        state = AuditState(response_stats=stats, access=emergency, break_glass=ask)
        auditor, record = _auditor(), _record()
        fast = auditor._payload(record, state, 200, "forwarded")
        reference = auditor._event(record, state, 200, "forwarded").to_json()
        assert _sealed(reference) == _sealed(fast)
        assert orjson.loads(_sealed(fast))["break_glass"] == {
            "outcome": "granted",
            "grant_ids": ["bg_1"],
            "reasons": ["unconscious patient in ER, allergies"],
            "reason": "r" * 20,
            "practice": "practice-a",
        }
        ordinary = AuditState(response_stats=stats, access=_access())
        assert "break_glass" not in auditor._payload(record, ordinary, 200, "forwarded")

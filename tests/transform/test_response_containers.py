"""A selected object the caller may not see is masked whole: its keys are PHI too (F1)."""

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transform_helpers import NOBODY, Grants

from proxy.transform import UnsafeBody, transform_response

JSON = "application/json"
SSN_OBJECT = {"123-45-6789": "primary"}
HISTORY_OBJECT = {"HIV positive": True, "Hepatitis C": "2019"}
SSN_CLASS_KEYS = ("ssn", "social_security_number")


def record(**fields):
    return {"id": 1, "practice_id": "A", "name": "Ada", **fields}


def transform(ctx, doc):
    return transform_response(orjson.dumps(doc), JSON, ctx)


class TestUngrantedCaller:
    def test_key_selected_objects_become_the_mask(self, make_ctx, policy):
        """Object keys in a selected field never reach a caller without a grant."""
        ctx = make_ctx()
        out = transform(ctx, record(history=HISTORY_OBJECT, ssn=SSN_OBJECT))
        fallback = policy.mask_for("ssn").for_json(None)
        assert out == orjson.dumps(record(history=None, ssn=fallback))
        assert ctx.stats.masked == {"history": 1, "ssn": 1}
        assert not ctx.stats.plaintext_kept
        assert not ctx.stats.disclosures

    def test_path_selected_object_becomes_the_mask(self, make_ctx):
        """The FHIR SSN path selects `value`; an object there is masked whole."""
        system = "http://hl7.org/fhir/sid/us-ssn"
        doc = record(identifier=[{"system": system, "value": SSN_OBJECT}])
        out = transform(make_ctx(), doc)
        assert b"123-45-6789" not in out
        assert orjson.loads(out)["identifier"][0]["value"] == "[redacted]"

    def test_objects_inside_a_selected_array_are_masked_one_by_one(self, make_ctx):
        """Arrays keep per-element decisions; each object element is masked whole."""
        ctx = make_ctx()
        out = transform(ctx, record(history=["flu", {"HIV positive": 1}, {}, None]))
        assert orjson.loads(out)["history"] == [None, None, {}, None]
        assert ctx.stats.masked == {"history": 2}

    def test_object_of_another_practice_than_granted(self, make_ctx):
        """A grant for another practice, or for another class, does not open the object."""
        for access in (Grants.all_classes("B"), Grants.of(("A", "ssn"))):
            out = transform(make_ctx(access), record(history=HISTORY_OBJECT))
            assert b"HIV" not in out
            assert b"Hepatitis" not in out

    def test_unknown_practice_masks_even_with_grants(self, make_ctx):
        """Two disagreeing practice keys make the practice unknown: masked for everyone."""
        doc = {"practice_id": "A", "PRACTICE-ID": "B", "history": HISTORY_OBJECT}
        out = transform(make_ctx(Grants.all_classes("A", "B")), doc)
        assert orjson.loads(out)["history"] is None

    def test_route_practice_decides_without_a_record_practice(self, make_ctx):
        """No practice key in the record: the route's practice, as for plaintext scalars."""
        doc = {"history": HISTORY_OBJECT}
        granted = make_ctx(Grants.all_classes("A"), route_practice="A")
        assert orjson.loads(transform(granted, doc)) == doc
        assert orjson.loads(transform(make_ctx(Grants.all_classes("A")), doc)) == {"history": None}

    def test_tokens_inside_are_not_opened_or_counted(self, make_ctx, keyring):
        """The object is masked as one value: no token inside is decided or disclosed."""
        token = keyring.encrypt("A", "history", "since 2019")
        ctx = make_ctx(Grants.of(("A", "ssn")))
        out = transform(ctx, record(history={"HIV positive": token}))
        assert orjson.loads(out)["history"] is None
        assert ctx.stats.masked == {"history": 1}
        assert not ctx.stats.decrypted
        assert not ctx.stats.withheld

    def test_empty_object_stays(self, make_ctx):
        """Nothing to hide in `{}`: the body comes back as the same bytes."""
        body = orjson.dumps(record(history={}))
        assert transform_response(body, JSON, make_ctx()) is body

    def test_too_deep_inside_a_masked_object_is_still_refused(self, make_ctx):
        """The same body gets the same answer (502) whoever asks."""
        deep = b'{"x":' * 70 + b"1" + b"}" * 70
        body = b'{"practice_id":"A","history":' + deep + b"}"
        for access in (NOBODY, Grants.all_classes("A")):
            with pytest.raises(UnsafeBody, match="too_deep"):
                transform_response(body, JSON, make_ctx(access))


class TestGrantedCaller:
    def test_granted_caller_sees_keys_and_values(self, make_ctx):
        """A caller who may see the class gets the object as before (same bytes)."""
        doc = record(history=HISTORY_OBJECT, ssn=SSN_OBJECT)
        body = orjson.dumps(doc)
        ctx = make_ctx(Grants.all_classes("A"))
        assert transform_response(body, JSON, ctx) is body
        # Each object's keys count once as kept plaintext, besides its non-null values.
        assert ctx.stats.plaintext_kept == {"history": 3, "ssn": 2}
        assert ctx.stats.records == {("A", "1")}

    @pytest.mark.parametrize("values", [None, {}, []])
    def test_keys_shown_over_empty_values_are_audited(self, make_ctx, values):
        """`{"HIV positive": null}` shows PHI (the key): counted and named for the audit."""
        doc = record(history={"HIV positive": values, "Hepatitis C": values})
        body = orjson.dumps(doc)
        ctx = make_ctx(Grants.all_classes("A"))
        assert transform_response(body, JSON, ctx) is body
        assert ctx.stats.plaintext_kept == {"history": 1}
        assert ctx.stats.disclosures == {("A", "1"): {"history"}}
        assert ctx.stats.touched

    def test_keys_shown_over_withheld_tokens_name_their_own_practice(self, make_ctx, keyring):
        """Keys of a practice-A object are A's disclosure even when its values are B's tokens."""
        foreign = keyring.encrypt("B", "history", "flu")
        ctx = make_ctx(Grants.all_classes("A"))
        out = orjson.loads(transform(ctx, record(history={"HIV positive": foreign})))
        assert out["history"] == {"HIV positive": None}
        assert ctx.stats.disclosures == {("A", "1"): {"history"}}
        assert ctx.stats.withheld == {"B"}

    def test_tokens_inside_are_decided_by_their_own_practice(self, make_ctx, keyring):
        """Inside a visible object, a token of another practice is still masked."""
        own = keyring.encrypt("A", "history", "asthma")
        foreign = keyring.encrypt("B", "history", "flu")
        ctx = make_ctx(Grants.all_classes("A"))
        out = orjson.loads(transform(ctx, record(history={"own": own, "foreign": foreign})))
        assert out["history"] == {"own": "asthma", "foreign": None}
        assert ctx.stats.decrypted == {"history": 1}
        assert ctx.stats.withheld == {"B"}


_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12).map(
    lambda tail: "PHI~" + tail
)
_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
_OBJECTS = st.recursive(
    st.dictionaries(_KEYS, _SCALARS, min_size=1, max_size=4),
    lambda inner: st.dictionaries(
        _KEYS, inner | st.lists(inner, max_size=3), min_size=1, max_size=4
    ),
    max_leaves=12,
)


class TestProperty:
    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],  # make_ctx builds fresh
    )
    @given(
        obj=_OBJECTS,
        key=st.sampled_from([*SSN_CLASS_KEYS, "member_id", "history"]),
        practice=st.sampled_from(["A", "B", None]),
        access=st.sampled_from([NOBODY, Grants.all_classes("B"), Grants.of(("A", "ssn"))]),
    )
    def test_ungranted_caller_never_sees_a_key(self, make_ctx, obj, key, practice, access):
        """For any selected object, a caller without access to its class never gets its keys."""
        doc = {"id": 1, key: obj} if practice is None else {"practice_id": practice, key: obj}
        field_class = {"member_id": "insurance_id", "history": "history"}.get(key, "ssn")
        if practice is not None and access.allows(practice, field_class):
            return
        out = transform(make_ctx(access), doc).decode("utf-8")
        assert "PHI~" not in out

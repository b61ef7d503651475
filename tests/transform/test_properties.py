"""Hypothesis properties of the response transform and its fast path."""

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transform_helpers import NOBODY, Grants

from proxy.transform import UnsafeBody, transform_response
from proxy.transform.jsonsafe import parse_json
from proxy.transform.names import is_ascii_revealing, normalize_name

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SELECTED = [
    "ssn",
    "SSN",
    "Ssn",
    "\uff33\uff33\uff2e",
    "social_security_number",
    "member_id",
    "history",
]
OTHER_KEYS = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8
).filter(
    lambda k: (
        normalize_name(k, fold_separators=True)
        not in {
            "ssn",
            "socialsecuritynumber",
            "memberid",
            "history",
            "identifier",
            "value",
            "practiceid",
        }
        # A key holding the token prefix is masked (fail closed), so it is not "without PHI".
        and "phi1." not in k
    )
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12).filter(lambda t: "phi1." not in t),
)


def documents(keys):
    """Arbitrary JSON documents whose object keys come from `keys`."""
    return st.recursive(
        SCALARS,
        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
        max_leaves=20,
    )


PHI_VALUES = st.text(min_size=9, max_size=20).map(lambda s: "PHI" + s)


@st.composite
def phi_documents(draw, keyring):
    """Documents with selected keys holding plaintext or tokens of random practices."""
    planted = []

    def phi():
        value = draw(PHI_VALUES)
        planted.append(value)
        practice = draw(st.sampled_from("ABC"))
        if draw(st.booleans()):
            return keyring.encrypt(practice, "ssn", value)
        return value

    def build(depth):
        if depth > 3 or draw(st.booleans()):
            return draw(SCALARS)
        if draw(st.booleans()):
            return [build(depth + 1) for _ in range(draw(st.integers(0, 3)))]
        obj = {}
        for _ in range(draw(st.integers(0, 3))):
            obj[draw(OTHER_KEYS)] = build(depth + 1)
        for key in draw(st.lists(st.sampled_from(SELECTED), max_size=2, unique=True)):
            obj[key] = phi()
        if draw(st.booleans()):
            obj["practice_id"] = draw(st.sampled_from("ABC"))
        return obj

    return build(0), planted


class TestProperties:
    @SETTINGS
    @given(data=st.data())
    def test_unauthorized_caller_never_sees_planted_values(self, make_ctx, keyring, data):
        """After the transform, no selected value of an unauthorized caller is readable."""
        doc, planted = data.draw(phi_documents(keyring))
        access = data.draw(
            st.sampled_from([NOBODY, Grants.all_classes("Z"), Grants.of(("A", "other"))])
        )
        out = transform_response(orjson.dumps(doc), "application/json", make_ctx(access))
        text = out.decode()
        for value in planted:
            assert orjson.dumps(value).decode()[1:-1] not in text
        assert "phi1." not in text

    @SETTINGS
    @given(doc=documents(OTHER_KEYS))
    def test_documents_without_phi_come_back_identical(self, make_ctx, doc):
        """No selected key and no token: the body comes back byte-identical (same object)."""
        body = json.dumps(doc, ensure_ascii=bool(len(str(doc)) % 2)).encode()
        assert transform_response(body, "application/json", make_ctx()) is body

    @SETTINGS
    @given(
        doc=documents(st.one_of(OTHER_KEYS, st.sampled_from(SELECTED))),
        ascii_only=st.booleans(),
    )
    def test_fast_path_is_sound(self, make_ctx, policy, doc, ascii_only):
        """may_need_transform False ⇒ the transform returns the body unchanged."""
        body = json.dumps(doc, ensure_ascii=ascii_only).encode()
        if not policy.may_need_transform(body, "application/json"):
            ctx = make_ctx(Grants.all_classes("A"), "A")
            assert transform_response(body, "application/json", ctx) == body

    @SETTINGS
    @given(key=st.text(max_size=6), ascii_only=st.booleans())
    def test_fast_path_sees_every_spelling_of_a_selected_key(self, policy, key, ascii_only):
        """Any key that normalizes to a selected name makes the fast path say 'inspect'."""
        for candidate in (key, key + "ssn", "S" + key + "SN"):
            body = json.dumps({candidate: 1}, ensure_ascii=ascii_only).encode()
            if policy.role(candidate).field_class is not None:
                assert policy.may_need_transform(body)

    @SETTINGS
    @given(
        pairs=st.lists(st.tuples(st.sampled_from(["a", "b", "a:b", "ssn"]), SCALARS), max_size=6),
        colon=st.sampled_from([":", ": "]),
    )
    def test_duplicate_check_agrees_with_stdlib(self, pairs, colon):
        """The duplicate check refuses exactly the bodies with a repeated key.

        ":" gives compact bodies (often orjson's own bytes: the equality shortcut), ": " spaced
        ones (the colon-count proof).
        """
        members = ",".join(f"{json.dumps(k)}{colon}{json.dumps(v)}" for k, v in pairs)
        body = ("{" + members + "}").encode()
        has_duplicates = len({k for k, _ in pairs}) != len(pairs)
        if has_duplicates:
            with pytest.raises(UnsafeBody, match="duplicate_key"):
                parse_json(body)
        else:
            assert parse_json(body) == dict(pairs)


class TestNormalizationTables:
    def test_combining_marks_never_yield_pure_ascii(self):
        """ASCII letter + non-revealing mark never normalizes to pure ASCII (fast-path premise)."""
        import unicodedata

        marks = [c for c in range(0x300, 0x370) if not is_ascii_revealing(c)]
        marks += [c for c in range(0x1AB0, 0x1B00) if unicodedata.combining(chr(c))]
        for letter in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
            for mark in marks:
                assert not normalize_name(letter + chr(mark), fold_separators=True).isascii()

    def test_revealing_set_contains_known_disguises(self):
        """Full-width letters, long s, Kelvin sign and math letters are known to reveal ASCII."""
        for char in "\uff33\u017f\u212a\U0001d42c\u24e2":
            assert is_ascii_revealing(ord(char))
        assert not is_ascii_revealing(ord("é"))

    def test_revealing_set_equals_its_definition_checked_one_code_point_at_a_time(self):
        """The block-wise scan finds exactly the code points a plain scan of each one finds."""
        one_by_one = set()
        for point in range(0x80, 0x110000):
            if 0xD800 <= point < 0xE000:
                continue
            normalized = normalize_name(chr(point), fold_separators=False)
            if any(ord(c) < 0x80 for c in normalized):
                one_by_one.add(point)
        assert {p for p in range(0x80, 0x110000) if is_ascii_revealing(p)} == one_by_one

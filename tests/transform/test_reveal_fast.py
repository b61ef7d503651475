"""The hot path (`reveal_token`, object shapes) decides exactly as the reference path does."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from transform_helpers import FIELDS, NOBODY, Grants

from keys.keyring import KeyInfo, Keyring, KeyState
from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.response import transform_json
from proxy.transform.reveal import decide_token, reveal_text, reveal_token
from proxy.transform.settings import FieldSettings

_NOW = datetime(2026, 1, 1, tzinfo=UTC)
_KEYS = {
    "A": ("a" * 16, KeyState.ACTIVE),
    "A-old": ("b" * 16, KeyState.RETIRED),
    "B": ("c" * 16, KeyState.ACTIVE),
}


def _keyring() -> Keyring:
    return Keyring.from_material(
        (
            KeyInfo(kid, name.split("-")[0], 2 if "-" not in name else 1, state, _NOW),
            bytes([i]) * 32,
        )
        for i, (name, (kid, state)) in enumerate(_KEYS.items())
    )


KEYRING = _keyring()
POLICY = FieldPolicy.compile(FieldSettings.model_validate(FIELDS))


def _token_pool() -> list[str]:
    """Valid, foreign, retired-key, tampered, nested and malformed candidates."""
    pool = [
        KEYRING.encrypt(practice, cls, f"{practice}-{cls}-123456789")
        for practice in ("A", "B")
        for cls in ("ssn", "insurance_id", "history", "unconfigured")
    ]
    ssn = KEYRING.encrypt("A", "ssn", "123-45-6789", deterministic=True)
    pool.append(ssn)
    pool.append(ssn[:-2] + ("AA" if not ssn.endswith("AA") else "BA"))  # tampered payload
    pool.append(KEYRING.encrypt("A", "history", "see " + KEYRING.encrypt("B", "ssn", "1")))
    header = ssn[: ssn.rfind(".")]
    retired = header.replace("a" * 16, "b" * 16)
    pool += [
        retired + ssn[ssn.rfind(".") :],  # names a retired key: refuses to open
        header.replace("a" * 16, "f" * 16) + ".AAAAAAAAAAAAAAAAAAAAAA",  # unknown kid
        "phi1.r.zz.ssn.AAAA",  # malformed kid
        ssn + ".extra",  # a dot inside the payload
        header + ".",  # empty payload
        "phi1.",
    ]
    return pool


POOL = _token_pool()
ACCESS = (
    NOBODY,
    Grants.all_classes("A"),
    Grants.of(("A", "ssn"), ("B", "history"), ("B", "unconfigured")),
    Grants.all_classes("A", "B"),
)


def _ctx(access: Grants) -> RevealContext:
    return RevealContext(POLICY, KEYRING, access, None, TransformStats())


class TestRevealToken:
    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(st.sampled_from(POOL), min_size=1, max_size=12),
        st.sampled_from(ACCESS),
        st.sampled_from([None, "rec-1"]),
        st.booleans(),
    )
    def test_matches_decide_token(self, tokens, access, record_id, as_json):
        """For any token sequence and grant set, output and stats equal decide_token's."""
        reference, fast = _ctx(access), _ctx(access)
        for token in tokens:
            decision = decide_token(reference, token, record_id)
            expected = decision.for_json() if as_json else decision.for_text()
            assert expected == reveal_token(fast, token, record_id, as_json=as_json)
        assert reference.stats == fast.stats

    def test_text_form_is_always_a_string(self):
        """reveal_text never returns None, even for a null-masked class."""
        history = KEYRING.encrypt("A", "history", "asthma")
        assert reveal_text(_ctx(NOBODY), history, None) == POLICY.redacted_text

    def test_grant_decided_before_the_cache(self):
        """A value opened (and cached) for a granted caller stays masked for the next caller."""
        token = KEYRING.encrypt("A", "insurance_id", "INS-42")
        assert reveal_token(_ctx(Grants.all_classes("A")), token, None, as_json=True) == "INS-42"
        assert reveal_token(_ctx(NOBODY), token, None, as_json=True) == "[hidden]"
        assert reveal_token(_ctx(Grants.all_classes("B")), token, None, as_json=True) == "[hidden]"


class TestShapes:
    def test_same_shape_records_with_different_practices(self):
        """Records sharing a key sequence still use their own practice and id for plaintext."""
        body = orjson.dumps(
            [
                {"id": "1", "practice_id": "A", "ssn": "111-11-1111"},
                {"id": "2", "practice_id": "B", "ssn": "222-22-2222"},
                {"id": "3", "practice_id": 7.5, "ssn": "333-33-3333"},
            ]
        )
        ctx = _ctx(Grants.all_classes("A"))
        out = orjson.loads(transform_json(body, ctx))
        assert [r["ssn"] for r in out] == ["111-11-1111", "***-**-2222", "***-**-3333"]
        assert ctx.stats.records == {("A", "1")}

    def test_token_in_a_key_of_a_cached_shape(self):
        """An object whose key is a token is rewritten every time its shape is seen."""
        token = KEYRING.encrypt("A", "insurance_id", "INS-7")
        body = orjson.dumps([{token: 1}, {token: 2}])
        out = orjson.loads(transform_json(body, _ctx(Grants.all_classes("A"))))
        assert out == [{"INS-7": 1}, {"INS-7": 2}]

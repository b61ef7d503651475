"""The canary search: finds exactly the registered tokens in any bytes, whatever their number."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from keys.testing import make_keyring
from proxy.canaries import NO_CANARIES, CanaryHit, CanaryScanner

KEYRING = make_keyring(["practice-a", "practice-b"])


def _token(i: int, *, practice: str = "practice-a", field_class: str = "ssn") -> str:
    return KEYRING.encrypt(practice, field_class, f"9{i:02d}-00-{i:04d}", deterministic=True)


#: 12 canaries over three headers: one group searched token by token, two split-and-looked-up.
CANARIES = {
    **{_token(i): i for i in range(5)},
    **{_token(i, field_class="insurance_id"): i for i in range(5, 7)},
    **{_token(i, practice="practice-b"): i for i in range(7, 12)},
}
#: Tokens of the same practices and classes that are not canaries.
OTHERS = [_token(i) for i in range(100, 110)] + [_token(i, practice="practice-b") for i in (200,)]


def _hit(token: str, i: int) -> CanaryHit:
    _, _, kid, field_class, _ = token.split(".")
    return CanaryHit(f"c_{i:016x}", KEYRING.practice_of(kid) or "", field_class, kid)


def scanner(tokens: list[str]) -> CanaryScanner:
    return CanaryScanner({t: _hit(t, CANARIES[t]) for t in tokens})


ALL = list(CANARIES)
SCANNERS = {"one": scanner(ALL[:1]), "few": scanner(ALL[:3]), "all": scanner(ALL)}
FILLER = st.binary(max_size=60) | st.sampled_from([b'", "ssn": "', b"\n", b"phi1.", b"phi1.d."])


class TestCanaryScanner:
    @given(
        st.sampled_from(sorted(SCANNERS)),
        st.lists(st.sampled_from(ALL + OTHERS) | FILLER, max_size=12),
    )
    @settings(max_examples=300, deadline=None)
    def test_finds_exactly_the_registered_tokens_present(self, which, parts):
        """Any mix of canaries, other tokens and bytes: the hits are the canaries it holds."""
        scan = SCANNERS[which]
        body = b" ".join(p.encode() if isinstance(p, str) else p for p in parts)
        expected = {
            scan._by_token[t]
            for t in scan._by_token
            if t in body  # a canary is found wherever its exact text is
        }
        assert scan.find(body) == expected

    @given(st.sampled_from(ALL), st.sets(st.integers(0, 60), min_size=1))
    @settings(max_examples=100, deadline=None)
    def test_json_escaped_spellings_are_found(self, token, positions):
        """JSON unicode escapes of any of a token's characters: still that canary."""
        chars = [f"\\u{ord(c):04x}" if i in positions else c for i, c in enumerate(token)]
        body = b'{"ssn": "%s"}' % "".join(chars).encode()
        assert orjson.loads(body)["ssn"] == token
        assert SCANNERS["all"].find(body) == {SCANNERS["all"]._by_token[token.encode()]}

    def test_a_body_of_other_tokens_holds_no_canary(self):
        """A 100-record page of other patients of the canaries' own practice: nothing found."""
        page = orjson.dumps([{"ssn": t} for t in OTHERS * 10])
        for scan in SCANNERS.values():
            assert scan.find(page) == frozenset()

    def test_no_canaries_finds_nothing_and_never_prints_tokens(self):
        """The empty scanner finds nothing; a scanner's repr counts, never lists, its tokens."""
        assert NO_CANARIES.find(ALL[0].encode()) == frozenset()
        assert not NO_CANARIES
        assert ALL[0] not in repr(SCANNERS["all"])
        assert len(SCANNERS["all"]) == len(ALL)

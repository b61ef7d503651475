"""Token grammar: strict parsing, strict base64url, and finding tokens inside any text."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keys_strategies import field_classes, kids

from keys.errors import InvalidToken
from keys.testing import make_keyring
from keys.token_format import (
    TOKEN_PATTERN,
    TOKEN_PATTERN_BYTES,
    TOKEN_PREFIX,
    TOKEN_PREFIX_BYTES,
    b64url_decode,
    b64url_encode,
    format_header,
    is_field_class,
    is_kid,
    kid_of,
    malformed_reason,
    parse_token,
)

KEYRING = make_keyring(["p1"])
TOKEN = KEYRING.encrypt("p1", "ssn", "123-45-6789")
SIV_TOKEN = KEYRING.encrypt("p1", "insurance_id", "X1", deterministic=True)


class TestBase64Url:
    @given(st.binary(max_size=300))
    def test_round_trip_matches_stdlib(self, data):
        """Encoding equals the stdlib's unpadded urlsafe form and decodes back to the input."""
        encoded = b64url_encode(data)
        assert encoded == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        if data:
            assert b64url_decode(encoded) == data

    @given(st.binary(min_size=1, max_size=64), st.integers(1, 15))
    def test_non_canonical_trailing_bits_rejected(self, data, bits):
        """Setting unused bits of the last character makes the string invalid."""
        encoded = b64url_encode(data)
        rem = len(encoded) % 4
        if rem == 0:
            return
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        mask = 0x0F if rem == 2 else 0x03
        if bits & mask == 0:
            return
        tweaked = encoded[:-1] + alphabet[alphabet.index(encoded[-1]) | (bits & mask)]
        with pytest.raises(InvalidToken):
            b64url_decode(tweaked)

    @pytest.mark.parametrize("text", ["", "A", "AAAA=", "AA==", "AA+A", "AA/A", "AA A", "ÄAAA"])
    def test_malformed_rejected(self, text):
        """Empty, impossible lengths, padding, standard-alphabet chars and non-ASCII are refused."""
        with pytest.raises(InvalidToken):
            b64url_decode(text)


class TestParse:
    def test_parse_splits_header_and_aad(self):
        """A valid token parses into mode, kid, class, the exact AAD bytes, and the payload."""
        parsed = parse_token(TOKEN)
        kid = KEYRING.primary("p1").kid
        assert parsed.mode == "r"
        assert parsed.kid == kid
        assert parsed.field_class == "ssn"
        assert parsed.aad == f"phi1.r.{kid}.ssn.".encode()
        assert len(parsed.payload) == 12 + 11 + 16

    def test_kid_of_reads_header_only(self):
        """kid_of returns the key id even when the payload is garbage-free but unauthenticated."""
        kid = KEYRING.primary("p1").kid
        assert kid_of(TOKEN) == kid
        with pytest.raises(InvalidToken):
            kid_of("phi1.r.XYZ.ssn.AAAA")

    @given(kids, field_classes)
    def test_header_validators_accept_grammar(self, kid, field_class):
        """Every kid and class generated from the grammar is accepted."""
        assert is_kid(kid)
        assert is_field_class(field_class)
        assert format_header("r", kid, field_class) == f"phi1.r.{kid}.{field_class}."

    @pytest.mark.parametrize(
        "field_class", ["", "Ssn", "1ssn", "_x", "a" * 33, "ss-n", "ssn.", "ß"]
    )
    def test_bad_field_class_refused(self, field_class):
        """Classes outside [a-z][a-z0-9_]{0,31} are refused."""
        assert not is_field_class(field_class)

    def test_malformed_reason_is_none_for_valid(self):
        """A well-formed token has no malformed reason."""
        assert malformed_reason(TOKEN) is None
        assert malformed_reason(SIV_TOKEN) is None

    def test_prefix_constants_agree(self):
        """The str and bytes prefixes are the same five characters every token starts with."""
        assert TOKEN.startswith(TOKEN_PREFIX)
        assert TOKEN_PREFIX.encode() == TOKEN_PREFIX_BYTES


def _embeddings(token: str) -> list[str]:
    return [
        json.dumps({"patient": {"ssn": token, "name": "x"}}),
        f'id,ssn,notes\n17,{token},"seen"\n18,"{token}",x\n',
        f"<td class='ssn'>{token}</td><input value=\"{token}\">",
        f"INSERT INTO patients (id, ssn) VALUES (17, '{token}'), (18, '{token}');",  # noqa: S608
        f"ssn={token}&x=1",
        f"{token}",
        f"a sentence ending in {token}.",
    ]


class TestPattern:
    # Fixed ids: the tokens are random, and pytest-xdist needs the same test names in every worker.
    @pytest.mark.parametrize("token", [TOKEN, SIV_TOKEN], ids=["randomized", "deterministic"])
    def test_finds_tokens_in_common_text_formats(self, token):
        """TOKEN_PATTERN finds exactly the token inside JSON, CSV, HTML, SQL and query strings."""
        for text in _embeddings(token):
            found = [m.group(0) for m in TOKEN_PATTERN.finditer(text)]
            assert found
            assert set(found) == {token}

    def test_bytes_pattern_finds_tokens_in_raw_bodies(self):
        """TOKEN_PATTERN_BYTES finds the same tokens in an encoded body."""
        body = _embeddings(TOKEN)[0].encode()
        assert [m.group(0) for m in TOKEN_PATTERN_BYTES.finditer(body)] == [TOKEN.encode()]

    @pytest.mark.parametrize(
        "text",
        [
            "x" + TOKEN,
            "_" + TOKEN,
            "a." + TOKEN,
            "-" + TOKEN,
            "9" + TOKEN,
            TOKEN.replace("phi1.", "phi2.", 1),
            TOKEN.replace(".ssn.", ".SSN.", 1),
        ],
        ids=["x", "underscore", "a-dot", "dash", "digit", "phi2", "upper-class"],
    )
    def test_no_match_inside_longer_word(self, text):
        """A token glued to word characters, or with a wrong header, is not matched."""
        assert TOKEN_PATTERN.search(text) is None

    def test_match_never_stops_inside_a_longer_run(self):
        """Glued payload characters extend the match (which then fails to open), never cut it."""
        match = TOKEN_PATTERN.search(TOKEN + "-x")
        assert match is not None
        assert match.group(0) == TOKEN + "-x"
        with pytest.raises(InvalidToken):
            KEYRING.open(match.group(0))

    @given(st.text(alphabet=" ,;:'\"<>()[]{}=&\n\t", max_size=3), st.text(max_size=3))
    def test_match_round_trips_through_parse(self, left, right):
        """Whatever the separators around it, a found token is the original and parses."""
        text = f"{left}{TOKEN} {right}"
        match = TOKEN_PATTERN.search(text)
        assert match is not None
        assert match.group(0) == TOKEN
        assert KEYRING.open(match.group(0)).plaintext == "123-45-6789"

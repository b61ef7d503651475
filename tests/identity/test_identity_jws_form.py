import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.identity import AuthenticationError
from proxy.identity.jws_form import check_compact_form


def jws_form_problem(token):
    """The refusal reason for `token`'s spelling, or None when it passes."""
    try:
        check_compact_form(token)
    except AuthenticationError as error:
        return error.reason
    return None


def b64(data):
    """Canonical base64url: no padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def lenient(segment):
    """What PyJWT's decoder makes of a segment: padding added, other characters skipped."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


HEADER = b64(b'{"alg":"ES256","kid":"k"}')
PAYLOAD = b64(b'{"sub":"u"}')
SIGNATURE = b64(bytes(range(64)))  # 86 characters: the last one has four unused bits


def _spare_bits_set(segment):
    """The same bytes, spelled with the last character's unused bits set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = 4 if len(segment) % 4 == 2 else 2
    last = alphabet.index(segment[-1])
    return segment[:-1] + alphabet[last | ((1 << unused) - 1)]


class TestCompactForm:
    def test_canonical_token_passes(self):
        """Three unpadded base64url segments, every spare bit zero: accepted."""
        assert jws_form_problem(f"{HEADER}.{PAYLOAD}.{SIGNATURE}") is None

    def test_empty_signature_is_left_to_the_algorithm_check(self):
        """`alg: none` tokens end in an empty segment; they are refused for their algorithm."""
        assert jws_form_problem(f"{HEADER}.{PAYLOAD}.") is None

    @pytest.mark.parametrize(
        "token",
        [
            f"{HEADER}.{PAYLOAD}.{SIGNATURE}==",
            f"{HEADER}=.{PAYLOAD}.{SIGNATURE}",
            f"{HEADER}.{PAYLOAD}=.{SIGNATURE}",
            f"{HEADER}.{PAYLOAD}.{_spare_bits_set(SIGNATURE)}",
        ],
        ids=["padded-signature", "padded-header", "padded-payload", "spare-bits"],
    )
    def test_other_spellings_of_the_same_bytes_are_refused(self, token):
        """Padding or spare bits spell the same bytes differently: refused, not normalised."""
        assert jws_form_problem(token) == "noncanonical_encoding"

    @pytest.mark.parametrize(
        "token",
        [
            f"{HEADER}.{PAYLOAD}.{SIGNATURE[:40]}!!!!{SIGNATURE[40:]}",
            f"{HEADER}.{PAYLOAD}.{SIGNATURE[:40]}+/+/{SIGNATURE[40:]}",
            f"{HEADER}.{PAYLOAD}.{SIGNATURE}AAA",  # 89 characters: 4n + 1
            f"{HEADER}.{PAYLOAD}",
            f"{HEADER}.{PAYLOAD}.{SIGNATURE}.{SIGNATURE}.{SIGNATURE}",
            f"{HEADER}.{PAYLOAD}.{SIGNATURE[:40]}\u00e9{SIGNATURE[41:]}",
        ],
        ids=["junk", "std-alphabet", "impossible-length", "two-parts", "jwe-shape", "non-ascii"],
    )
    def test_text_that_is_not_base64url_is_malformed(self, token):
        """Characters a lenient decoder would skip, or impossible lengths: malformed."""
        assert jws_form_problem(token) == "malformed"

    def test_the_refused_spellings_verify_leniently(self):
        """The reason for the check: PyJWT's decoder reads these spellings as the same bytes."""
        original = lenient(SIGNATURE)
        assert lenient(SIGNATURE + "==") == original
        assert lenient(_spare_bits_set(SIGNATURE)) == original

    @given(st.binary(min_size=1, max_size=200))
    def test_every_canonical_encoding_passes(self, data):
        """Whatever the bytes, their base64url encoding without padding is accepted."""
        segment = b64(data)
        assert jws_form_problem(f"{segment}.{segment}.{segment}") is None

    @given(st.binary(min_size=1, max_size=200).filter(lambda data: len(data) % 3))
    def test_every_padded_or_spare_bit_spelling_is_refused(self, data):
        """Any spelling of bytes other than their canonical one is refused."""
        segment = b64(data)
        padded = segment + "=" * (-len(segment) % 4)
        for variant in (padded, _spare_bits_set(segment)):
            assert lenient(variant) == data
            assert jws_form_problem(f"{HEADER}.{PAYLOAD}.{variant}") == "noncanonical_encoding"

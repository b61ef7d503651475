import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.errors import UpstreamUnavailable
from proxy.forward.decode import BodyTooLarge, decode_body, encoding_is_supported

LIMIT = 64 * 1024


class TestDecodeBody:
    @given(st.binary(max_size=4096), st.sampled_from(["gzip", "x-gzip", "deflate", "", None]))
    def test_round_trip_under_the_cap(self, data, coding):
        """Every supported coding decodes back to the original bytes."""
        if coding in {"gzip", "x-gzip"}:
            encoded = gzip.compress(data)
        elif coding == "deflate":
            encoded = zlib.compress(data)
        else:
            encoded = data
        assert decode_body(encoded, coding, limit=LIMIT) == data

    def test_raw_deflate_is_accepted(self):
        """Servers that send raw deflate (no zlib header) are decoded too."""
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        encoded = compressor.compress(b"hello world") + compressor.flush()
        assert decode_body(encoded, "deflate", limit=LIMIT) == b"hello world"

    def test_gzip_bomb_is_refused(self):
        """A small body that inflates past the limit raises BodyTooLarge, not MemoryError."""
        bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
        assert len(bomb) < 100 * 1024
        with pytest.raises(BodyTooLarge):
            decode_body(bomb, "gzip", limit=LIMIT)

    def test_stacked_codings_are_undone_in_reverse(self):
        """`Content-Encoding: deflate, gzip` means gzip was applied last and is undone first."""
        encoded = gzip.compress(zlib.compress(b"payload"))
        assert decode_body(encoded, "deflate, gzip", limit=LIMIT) == b"payload"

    def test_unknown_coding_is_refused(self):
        """A coding we cannot decode (br) is an error, never passed through untransformed."""
        assert not encoding_is_supported("br")
        with pytest.raises(UpstreamUnavailable) as caught:
            decode_body(b"...", "br", limit=LIMIT)
        assert caught.value.code == "upstream_unknown_encoding"

    def test_corrupt_and_truncated_gzip_are_refused(self):
        """Garbage or a cut-off stream is a 502-class error, not partial plaintext."""
        whole = gzip.compress(b"x" * 1000)
        for broken in (b"\x1f\x8bnot gzip at all", whole[: len(whole) // 2]):
            with pytest.raises(UpstreamUnavailable):
                decode_body(broken, "gzip", limit=LIMIT)

    def test_identity_body_over_limit_is_refused(self):
        """An uncompressed body over the limit is refused too."""
        with pytest.raises(BodyTooLarge):
            decode_body(b"x" * (LIMIT + 1), None, limit=LIMIT)

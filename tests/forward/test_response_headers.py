import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.forward.decode import UnsupportedRequestEncoding, refuse_undecoded_request_body
from proxy.forward.response_headers import (
    content_codings,
    drop_cdn_cache_headers,
    refuse_conflicting_headers,
    scrub_header_tokens,
    standard_reason,
)
from proxy.transform.errors import UnsafeBody

TOKEN = "phi1.r.0123456789abcdef.ssn." + "A" * 40


def _headers(*pairs):
    return CIMultiDictProxy(CIMultiDict(pairs))


class TestConflictingHeaders:
    @pytest.mark.parametrize(
        "pairs",
        [
            [("Content-Type", "text/plain"), ("Content-Type", "application/json")],
            [("Content-Type", "image/png, application/json")],
            [("Content-Type", "text/html; charset=utf-8, application/json")],
            [("Content-Type", 'text/csv; a="x,y"; b=c, application/json')],
            [("Content-Type", 'text/csv; a="x,y')],
            [("Connection", "close, Content-Encoding")],
            [("Connection", "content_type")],
            [("Connection", "keep-alive"), ("Connection", "Content-Length")],
            [("Content-Type", "text/plain; charset=utf-8; charset=utf-16")],
            [("Content-Type", "application/json; Charset=utf-16; CHARSET=utf-8")],
            [("Content-Type", "text/plain; charset*=utf-16''x")],
            [("Content-Type", "text/plain; a=1; a=1")],
        ],
    )
    def test_refused(self, pairs):
        """Anything a client could read as another media type or coding is unsafe."""
        with pytest.raises(UnsafeBody) as caught:
            refuse_conflicting_headers(_headers(*pairs))
        assert caught.value.reason == "conflicting_headers"

    @pytest.mark.parametrize(
        "pairs",
        [
            [],
            [("Content-Type", "application/json; charset=utf-8")],
            [("Content-Type", 'multipart/mixed; boundary="a,b"')],
            [("Content-Type", 'text/plain; charset=utf-8; a="charset=x; charset=y"')],
            [("Content-Type", "text/plain;; charset=utf-8;")],
            [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
            [("Connection", "close")],
        ],
    )
    def test_accepted(self, pairs):
        """One media type, quoted commas, several Content-Encoding lines are fine."""
        refuse_conflicting_headers(_headers(*pairs))

    def test_every_content_encoding_line_is_read(self):
        """All lines, in order, as one list (the first alone hid the second)."""
        pairs = [("Content-Encoding", "identity"), ("content-encoding", "gzip")]
        assert content_codings(_headers(*pairs)) == "identity, gzip"
        assert content_codings(_headers()) is None


class TestHeaderTokens:
    def test_tokens_are_masked_and_residue_is_dropped(self):
        """Every token becomes the redacted text; a leftover prefix drops the header."""
        scrubbed = scrub_header_tokens(
            CIMultiDict(
                [
                    ("Location", f"/p?a={TOKEN}&b={TOKEN}"),
                    ("X-Broken", "phi1.r.nothex.ssn.x"),
                    (f"X-{TOKEN}", "1"),
                    ("Set-Cookie", "a=1"),
                ]
            ),
            "[redacted]",
        )
        assert list(scrubbed.headers.items()) == [
            ("Location", "/p?a=[redacted]&b=[redacted]"),
            ("Set-Cookie", "a=1"),
        ]
        assert (scrubbed.masked, scrubbed.dropped) == (2, 2)  # names are not masked, dropped

    @pytest.mark.parametrize(
        "value",
        [
            "/s?q=" + TOKEN.replace(".", "%2E"),
            "/s?q=" + TOKEN.replace(".", "%2e", 1),
            "/s?q=" + TOKEN.upper(),
            "/s?q=%70hi1%2Er",
            "/s?q=PHI1.r.nothex",
        ],
    )
    def test_encoded_or_cased_token_drops_the_header(self, value):
        """A token we cannot find (percent-encoded, upper case) still names one: dropped."""
        scrubbed = scrub_header_tokens(
            CIMultiDict([("Location", value), ("X-Ok", "a")]), "[redacted]"
        )
        assert list(scrubbed.headers.items()) == [("X-Ok", "a")]
        assert scrubbed.dropped == 1

    def test_mask_text_is_literal_and_header_safe(self):
        """Backslashes are not regex escapes, and CR/LF cannot split the header."""
        scrubbed = scrub_header_tokens(CIMultiDict([("X", TOKEN)]), "\\1\r\nX-Evil: 1")
        assert scrubbed.headers["X"] == "\\1  X-Evil: 1"

    def test_cache_headers_that_outrank_no_store_go(self):
        """CDN, surrogate, nginx, Akamai, Fastly and LiteSpeed cache headers are removed."""
        headers = CIMultiDict(
            [
                ("CDN-Cache-Control", "max-age=1"),
                ("surrogate_control", "max-age=1"),
                ("Cloudflare-CDN-Cache-Control", "max-age=1"),
                ("Akamai-CDN-Cache-Control", "max-age=1"),
                ("X-Accel-Expires", "3600"),
                ("x_accel_expires", "3600"),
                ("Edge-Control", "cache-maxage=3600"),
                ("Fastly-Surrogate-Control", "max-age=3600"),
                ("X-LiteSpeed-Cache-Control", "public, max-age=3600"),
                ("Cache-Control", "no-store"),
            ]
        )
        drop_cdn_cache_headers(headers)
        assert list(headers.items()) == [("Cache-Control", "no-store")]

    def test_reason_is_standard(self):
        """The portal's phrase is replaced; unknown statuses get none."""
        assert standard_reason(302) == "Found"
        assert standard_reason(299) == ""


class TestRequestEncoding:
    @pytest.mark.parametrize("value", ["gzip", "GZIP", "deflate", "identity"])
    def test_codings_the_server_inflated_pass(self, value):
        """One line, a coding aiohttp's server undoes (or none)."""
        refuse_undecoded_request_body(_headers(("Content-Encoding", value)))

    @pytest.mark.parametrize(
        "pairs",
        [
            [("Content-Encoding", "br")],
            [("Content-Encoding", "x-gzip")],
            [("Content-Encoding", "gzip, identity")],
            [("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
        ],
    )
    def test_other_codings_are_415(self, pairs):
        """Anything aiohttp leaves encoded would pass the request guard unread."""
        with pytest.raises(UnsupportedRequestEncoding) as caught:
            refuse_undecoded_request_body(_headers(*pairs))
        assert caught.value.status == 415

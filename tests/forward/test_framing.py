import pytest
from aiohttp import HttpVersion10, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.forward.framing import BadFraming, refuse_bad_framing


def _headers(*pairs):
    return CIMultiDictProxy(CIMultiDict(pairs))


class TestRefuseBadFraming:
    @pytest.mark.parametrize(
        "headers",
        [(), (("Content-Length", "2"),), (("Transfer-Encoding", "chunked"),)],
        ids=["no-body", "content-length", "chunked"],
    )
    def test_http11_with_length_or_one_chunked_passes(self, headers):
        """Content-Length, or a single `chunked` on HTTP/1.1, is framing the proxy can trust."""
        refuse_bad_framing(HttpVersion11, _headers(*headers))

    def test_chunked_in_any_case_and_spacing_passes(self):
        """Coding names are case-insensitive and may carry optional whitespace (RFC 9112)."""
        refuse_bad_framing(HttpVersion11, _headers(("Transfer-Encoding", " Chunked ")))

    @pytest.mark.parametrize(
        "values",
        [["gzip, chunked"], ["deflate,chunked"], ["chunked, chunked"], ["gzip"], ["identity"]],
    )
    def test_codings_other_than_one_chunked_are_refused(self, values):
        """`gzip, chunked` would reach the guard compressed and unread: 400."""
        with pytest.raises(BadFraming) as info:
            refuse_bad_framing(HttpVersion11, _headers(*(("Transfer-Encoding", v) for v in values)))
        assert info.value.status == 400
        assert info.value.code == "bad_transfer_encoding"

    @pytest.mark.parametrize("value", ["chunked", "gzip, chunked"])
    def test_any_transfer_encoding_on_http10_is_refused(self, value):
        """HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 section 6.1)."""
        with pytest.raises(BadFraming) as info:
            refuse_bad_framing(HttpVersion10, _headers(("Transfer-Encoding", value)))
        assert "HTTP/1.0" in info.value.message

    def test_message_never_echoes_the_clients_value(self):
        """The answer is fixed text: the client's header value is not reflected."""
        with pytest.raises(BadFraming) as info:
            refuse_bad_framing(HttpVersion11, _headers(("Transfer-Encoding", "x-evil, chunked")))
        assert "x-evil" not in info.value.message

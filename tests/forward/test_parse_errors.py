import pytest
from aiohttp import http_exceptions

from proxy.forward.parse_errors import UNPARSED_TEXT, unparsed_reason


class TestUnparsedReason:
    @pytest.mark.parametrize(
        ("exc", "reason"),
        [
            (http_exceptions.LineTooLong(b"Bearer eyJsecret", 16384), "line_too_long"),
            (http_exceptions.BadHttpMethod("\x16\x03\x01"), "bad_method"),
            (http_exceptions.BadStatusLine("GET"), "bad_request_line"),
            (http_exceptions.InvalidHeader(b"X Bad"), "bad_header"),
            (http_exceptions.InvalidURLError("bad"), "bad_target"),
            (http_exceptions.TransferEncodingError("bad chunk"), "bad_framing"),
            (http_exceptions.BadHttpMessage("Duplicate 'Transfer-Encoding'"), "bad_message"),
        ],
    )
    def test_each_parser_error_gets_a_fixed_reason(self, exc, reason):
        """The exception's class picks the reason; its text (the client's bytes) is unused."""
        assert unparsed_reason(exc) == reason
        assert reason in UNPARSED_TEXT

    def test_texts_quote_nothing_from_a_request(self):
        """Every client-facing text is a fixed sentence, the same for every request."""
        for text in UNPARSED_TEXT.values():
            assert "{" not in text
            assert "Bearer" not in text

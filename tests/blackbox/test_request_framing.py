"""Requests the proxy cannot frame or parse safely, black-box over a raw socket.

Before issue 17 (items 7 and 8) a 100 KB header got aiohttp's own 400, which quoted the start of
the caller's bearer token and wrote no access line, and a body sent with
`Transfer-Encoding: gzip, chunked` or chunked on HTTP/1.0 was forwarded to the portal.
"""

from __future__ import annotations

import gzip

import pytest
from raw_keepalive_portal import exchange, first_answer

#: The start of the caller's credential, as aiohttp's parser would quote it.
TOKEN_START = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"


def _access_lines(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == "phi_proxy.access"]


def _only_answer(data: bytes):
    """The one response in `data`: the proxy closed the connection after it."""
    answer = first_answer(data)
    (length,) = answer.values("Content-Length")
    assert len(answer.rest) == int(length), "a second request on the connection was answered"
    return answer


class TestUnparsableRequests:
    @pytest.mark.parametrize(
        "request_head",
        [
            f"GET /api/x HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {TOKEN_START}"
            + "A" * 100_000
            + "\r\n\r\n",
            f"GET /api/{TOKEN_START}{'A' * 100_000} HTTP/1.1\r\nHost: p\r\n\r\n",
        ],
        ids=["100KB-header", "100KB-request-line"],
    )
    async def test_oversized_request_gets_a_fixed_answer_and_an_access_line(
        self, proxy_env, caplog, request_head
    ):
        """A fixed JSON 400 that echoes nothing of the request, logged with its reason."""
        data = await exchange(proxy_env.proxy_url, request_head.encode("latin-1"))
        answer = _only_answer(data)
        assert answer.status == 400
        assert TOKEN_START.encode() not in data
        assert b"AAAAAAAA" not in data
        body = answer.json()
        assert body["error"] == "bad_http_request"
        assert answer.values("X-Request-Id") == [body["request_id"]]
        (line,) = _access_lines(caplog)
        assert line["request_id"] == body["request_id"]
        assert line["status"] == 400
        assert line["outcome"] == "bad_http_request:line_too_long"
        assert all(TOKEN_START not in r.getMessage() for r in caplog.records)
        assert all(TOKEN_START not in str(r.__dict__) for r in caplog.records)
        assert proxy_env.portal.received == []

    async def test_conflicting_framing_gets_the_same_fixed_answer(self, proxy_env, caplog):
        """Other parse errors (here Content-Length beside chunked) get the same kind of answer."""
        request = (
            b"POST /api/bookings HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
        answer = _only_answer(await exchange(proxy_env.proxy_url, request))
        assert answer.status == 400
        assert answer.json()["error"] == "bad_http_request"
        (line,) = _access_lines(caplog)
        assert line["outcome"] == "bad_http_request:bad_message"


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


NOTE = b'{"note": "call back after 3pm"}'
#: Pipelined after the refused request: never read as a request of its own.
FOLLOW_UP = b"GET /api/after HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n"


class TestTransferEncoding:
    @pytest.mark.parametrize(
        ("version", "coding", "body"),
        [
            ("HTTP/1.1", "gzip, chunked", gzip.compress(NOTE)),
            ("HTTP/1.0", "chunked", NOTE),
        ],
        ids=["gzip-chunked", "chunked-on-http10"],
    )
    async def test_untrustworthy_transfer_encoding_is_refused_and_the_connection_closed(
        self, proxy_env, caplog, version, coding, body
    ):
        """400 `bad_transfer_encoding`, nothing forwarded, nothing after it read (RFC 9112 6.1)."""
        request = (
            f"POST /api/notes {version}\r\nHost: p\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: {coding}\r\n\r\n"
        ).encode() + _chunked(body)
        if version == "HTTP/1.1":  # HTTP/1.0 ends the connection after one request anyway
            request += FOLLOW_UP
        answer = _only_answer(await exchange(proxy_env.proxy_url, request))
        assert answer.status == 400
        assert answer.json()["error"] == "bad_transfer_encoding"
        (line,) = _access_lines(caplog)
        assert line["outcome"] == "bad_transfer_encoding"
        assert proxy_env.portal.received == []

    async def test_plain_chunked_request_on_http11_still_passes(self, proxy_env):
        """One `chunked` coding on HTTP/1.1 is ordinary framing: forwarded as before."""
        request = (
            b"POST /api/notes HTTP/1.1\r\nHost: p\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ) + _chunked(NOTE)
        answer = first_answer(await exchange(proxy_env.proxy_url, request))
        assert answer.status == 200
        (received,) = proxy_env.portal.received
        assert received.body == NOTE

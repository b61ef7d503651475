"""HTTP framing and request targets, black-box: a real proxy, a raw-socket portal, raw bytes.

Padded UTF-16/32 JSON is refused; whitespace before JSON labelled as media is read, not streamed;
a streamed body cut mid-way closes the connection with no second response; `Expect:
100-continue` reaches a portal that just reads the body; request targets that are not `/path`,
method-override headers and a final 1xx from the portal are refused.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from blackbox_env import PLANTED
from raw_keepalive_portal import (
    KeepAlivePortal,
    PortalRequest,
    Reply,
    exchange,
    first_answer,
    portal_env,
    request_bytes,
    response,
)

from proxy.logs import ACCESS_LOGGER

if TYPE_CHECKING:
    from collections.abc import Callable

SSN = "900-55-4321"
HISTORY = "asthma, 2019"
PLANTED.update((SSN, HISTORY))
DOC = {"id": 7, "practice_id": "practice-a", "ssn": SSN, "medical_history": HISTORY}
PATIENT = "/api/practices/practice-a/patients/7"
GET_PATIENT = request_bytes("GET", PATIENT, [("Connection", "close")])
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8


def _answering(*chunks: bytes) -> KeepAlivePortal:
    """A portal that answers every request with the same bytes."""
    return KeepAlivePortal(answer=lambda _request: Reply(list(chunks)))


def _no_phi_in(data: bytes) -> None:
    """No planted value in `data`, in any encoding a JSON reader could pick."""
    for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        for value in (SSN, HISTORY):
            assert value.encode(encoding) not in data


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    return [
        record.__dict__["fields"]
        for record in caplog.records
        if record.name == ACCESS_LOGGER and "fields" in record.__dict__
    ]


# ---------------------------------------------------------------------------------------------
# F1: UTF-16/32 JSON without a BOM, padded past any fixed window, under every Content-Type
# ---------------------------------------------------------------------------------------------
WIDE = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")


@pytest.mark.parametrize("encoding", WIDE)
@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "image/png", None])
async def test_padded_wide_json_is_refused(tmp_path, encoding, content_type):
    body = (" \t\r\n" * 40 + json.dumps(DOC)).encode(encoding)
    headers = [("Content-Type", content_type)] if content_type else []
    portal = _answering(response("200 OK", headers, body))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    assert answer.status == 502
    assert answer.json()["error"] == "unsafe_upstream_body"
    _no_phi_in(data)


@pytest.mark.parametrize("encoding", WIDE)
async def test_wide_whitespace_only_body_is_refused(tmp_path, encoding):
    """Decision: a body of nothing but UTF-16/32 whitespace is refused, not passed (fail closed)."""
    portal = _answering(
        response("200 OK", [("Content-Type", "application/json")], (" " * 100).encode(encoding))
    )
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    assert first_answer(data).status == 502


async def test_binary_media_starting_with_nuls_still_streams(tmp_path):
    """An icon starts 00 00 01 00 (detect_encoding says UTF-32-BE); it is not wide text."""
    icon = b"\x00\x00\x01\x00\x01\x00" + bytes(range(256)) * 4
    portal = _answering(response("200 OK", [("Content-Type", "image/x-icon")], icon))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    assert answer.status == 200
    assert answer.rest == icon


# ---------------------------------------------------------------------------------------------
# F2: JSON whitespace in front of JSON labelled as media. Since review 7 (F5) media streams only
# when it starts with a known media signature; anything else labelled as media is read and
# transformed like any body (tests/blackbox/test_media_signatures.py has the prefixes).
# ---------------------------------------------------------------------------------------------
def _transformed_not_streamed(data: bytes) -> None:
    """The body went through the transform: legacy plaintext masked (200) or withheld (502)."""
    answer = first_answer(data)
    if answer.status == 200:
        assert answer.values("Cache-Control") == ["no-store"]  # set only by the transform
    else:
        assert answer.status == 502
        assert answer.json()["error"] == "unsafe_upstream_body"
    _no_phi_in(data)


@pytest.mark.parametrize(
    "padding",
    [
        b"\n" * (512 * 1024),  # more than one socket read of padding
        b"\xef\xbb\xbf" + b"\x1e" + b" \t\r\n" * (128 * 1024),  # BOM, RS, mixed whitespace
    ],
    ids=["newlines", "bom-rs-mixed"],
)
async def test_padded_json_labelled_as_image_is_transformed(tmp_path, padding):
    body = padding + json.dumps(DOC).encode()
    portal = _answering(response("200 OK", [("Content-Type", "image/png")], body))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    _transformed_not_streamed(data)


@pytest.mark.parametrize("prefix", [b")]}',\n", b"for(;;);", b"while(1);"])
async def test_json_behind_an_anti_hijacking_prefix_labelled_as_image_is_transformed(
    tmp_path, prefix
):
    """Angular-style clients cut `)]}',` off and parse the rest, whatever the label says."""
    body = prefix + json.dumps(DOC).encode()
    portal = _answering(response("200 OK", [("Content-Type", "image/png")], body))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    _transformed_not_streamed(data)


async def test_padding_beyond_the_response_limit_is_refused(tmp_path):
    """Whitespace before a PNG is no signature: read like any body, so the limit applies."""
    limits = {"max_request_body": 64 * 1024, "max_response_body": 4096}
    body = b" " * 8192 + PNG
    portal = _answering(response("200 OK", [("Content-Type", "image/png")], body))
    async with portal_env(tmp_path, portal, overrides={"limits": limits}) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    assert first_answer(data).status == 502
    assert PNG not in data


async def test_whitespace_only_body_labelled_as_image_is_read_not_streamed(tmp_path):
    """No signature, no PHI: passed on as read (buffered, Content-Length framed)."""
    blank = b" \n" * 700
    portal = KeepAlivePortal(
        answer=lambda _request: Reply(
            [response("200 OK", [("Content-Type", "image/png")], blank, length=False)],
            close=True,
        )
    )
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    assert answer.status == 200
    assert answer.values("Content-Length") == [str(len(blank))]  # not chunked: it was read
    assert answer.rest == blank


async def test_real_media_streams_byte_for_byte(tmp_path):
    """The peeked bytes are sent first, then the rest: nothing lost, nothing added."""
    image = PNG * 64
    portal = _answering(response("200 OK", [("Content-Type", "image/png")], image))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    assert answer.status == 200
    assert answer.rest == image


async def test_streamed_media_carries_the_request_id(tmp_path):
    """The id is part of the streamed head (set after `prepare` it was never sent)."""
    portal = _answering(response("200 OK", [("Content-Type", "image/png")], PNG))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    assert len(first_answer(data).values("X-Request-Id")) == 1


# ---------------------------------------------------------------------------------------------
# F3: a streamed body that breaks after its head went out
# ---------------------------------------------------------------------------------------------
def _cut_image(framing: str) -> Callable[[PortalRequest], Reply]:
    """The portal declares a large image, sends part of it and closes the connection."""
    if framing == "content-length":
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n"
        partial = PNG
    else:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n"
        partial = b"%x\r\n" % len(PNG) + PNG + b"\r\n" + b"1000\r\n" + PNG[:100]

    def answer(request: PortalRequest) -> Reply:
        if request.target == "/img.png":
            return Reply([head + partial], close=True)
        return Reply([response("200 OK", [("Content-Type", "application/json")], b'{"next":1}')])

    return answer


def _complete_chunks(body: bytes) -> bytes:
    """The data of every complete chunk at the start of a chunked body (cut or not)."""
    data = b""
    while b"\r\n" in body:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0 or len(body) < size + 2:
            break
        data += body[:size]
        body = body[size + 2 :]
    return data


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_body_cut_midway_closes_the_connection_with_no_second_response(
    tmp_path, caplog, framing
):
    portal = KeepAlivePortal(answer=_cut_image(framing))
    pipelined = request_bytes("GET", "/img.png") + request_bytes(
        "GET", "/next", [("Connection", "close")]
    )
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, pipelined)  # returns once the proxy closes
    answer = first_answer(data)
    assert answer.status == 200
    assert data.count(b"HTTP/1.1 ") == 1  # no second status line anywhere
    body = answer.rest
    if framing == "chunked":
        assert not body.endswith(b"0\r\n\r\n")  # no final chunk: the client sees the cut
        assert PNG in _complete_chunks(body)  # the peeked head may be a chunk of its own
    else:
        assert answer.values("Content-Length") == ["100000"]
        assert body == PNG  # what the portal sent, and nothing else
    assert [r.target for r in portal.requests] == ["/img.png"]  # the pipelined one never went
    (line,) = [f for f in _access_lines(caplog) if f.get("cut_off_after") is not None]
    assert line["cut_off_after"] == 200
    assert line["status"] == 502
    assert line["outcome"] == "upstream_unavailable"


# ---------------------------------------------------------------------------------------------
# F4: Expect: 100-continue
# ---------------------------------------------------------------------------------------------
async def test_expect_continue_post_reaches_a_portal_that_just_reads_the_body(tmp_path):
    portal = _answering(response("200 OK", [("Content-Type", "application/json")], b'{"ok":1}'))
    body = b'{"note":"hello"}'
    request = request_bytes(
        "POST",
        "/api/notes",
        [("Connection", "close"), ("Expect", "100-continue"), ("Content-Type", "application/json")],
        body,
    )
    async with portal_env(tmp_path, portal, overrides={"upstream": {"timeout": 2}}) as env:
        data = await exchange(env.proxy_url, request)
    assert first_answer(data).status == 200
    (received,) = portal.requests
    assert "expect" not in received.header_names()
    assert received.body == body


# ---------------------------------------------------------------------------------------------
# F5 / O1: request targets that are not a single-slash path
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", "http://127.0.0.1:1/api/practices/practice-a/patients/7"),
        ("GET", "host://x/api/y"),
        ("POST", "//api/practices/practice-b/patients"),
        ("GET", "//x/api/../y"),
        ("OPTIONS", "*"),
    ],
)
async def test_odd_request_targets_are_refused_before_forwarding(tmp_path, method, target):
    portal = _answering(response("200 OK", [("Content-Type", "application/json")], b'{"ok":1}'))
    body = json.dumps({"name": "x"}).encode() if method == "POST" else b""
    headers = [("Connection", "close"), ("Content-Type", "application/json")]
    async with portal_env(tmp_path, portal) as env:
        headers.append(("Authorization", env.auth("mallory")["Authorization"]))
        data = await exchange(env.proxy_url, request_bytes(method, target, headers, body))
    answer = first_answer(data)
    assert answer.status == 400
    error = answer.json()
    assert error["error"] == "bad_request_target"
    assert "single '/'" in error["message"]
    assert portal.requests == []
    assert portal.connections == 0


async def test_ordinary_targets_reach_the_portal_byte_for_byte(tmp_path):
    target = "/api/a%2Fb/./c/../d;x=1//e?q=%E2%82%AC&r=a+b&s=%zz&t=%2f"
    portal = _answering(response("200 OK", [("Content-Type", "application/json")], b'{"ok":1}'))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(
            env.proxy_url, request_bytes("GET", target, [("Connection", "close")])
        )
    assert first_answer(data).status == 200
    (received,) = portal.requests
    assert received.request_line == f"GET {target} HTTP/1.1"


# ---------------------------------------------------------------------------------------------
# Method-override headers
# ---------------------------------------------------------------------------------------------
async def test_method_override_headers_do_not_reach_the_portal(tmp_path):
    portal = _answering(response("200 OK", [("Content-Type", "application/json")], b'{"ok":1}'))
    overrides = [
        ("X-HTTP-Method-Override", "PUT"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "PATCH"),
        ("X_HTTP_Method_Override", "PUT"),
    ]
    body = b'{"name":"x"}'
    headers = [("Connection", "close"), ("Content-Type", "application/json"), *overrides]
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, request_bytes("POST", "/api/things", headers, body))
    assert first_answer(data).status == 200
    (received,) = portal.requests
    names = {name.replace("_", "-") for name in received.header_names()}
    assert names.isdisjoint({"x-http-method-override", "x-http-method", "x-method-override"})


# ---------------------------------------------------------------------------------------------
# A final 1xx status from the portal
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "head",
    [
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"X-Portal-Marker: seen\r\n\r\nraw tunnel bytes"
        ),
        b"HTTP/1.1 101 Switching Protocols\r\nX-Portal-Marker: seen\r\n\r\n",
    ],
    ids=["upgrade", "bare"],
)
async def test_final_informational_status_from_the_portal_is_a_502(tmp_path, head):
    portal = KeepAlivePortal(answer=lambda _request: Reply([head], close=True))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data, skip_interim=False)
    assert answer.status == 502
    assert answer.json()["error"] == "upstream_informational_status"
    assert b"101" not in data.split(b"\r\n", 1)[0]
    assert b"X-Portal-Marker" not in data
    assert b"Upgrade" not in data
    assert b"raw tunnel bytes" not in data


async def test_interim_status_with_no_final_response_is_a_502(tmp_path):
    """Any other 1xx is interim for aiohttp's client; a portal that stops there fails closed."""
    head = b"HTTP/1.1 102 Processing\r\nX-Portal-Marker: seen\r\n\r\n"
    portal = KeepAlivePortal(answer=lambda _request: Reply([head], close=True))
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    assert first_answer(data, skip_interim=False).status == 502
    assert b"X-Portal-Marker" not in data

"""Review 7 F5, black-box: media streams unscanned only when it starts with a media signature.

A real proxy in front of a raw-socket portal. A body labelled `image/*`, `audio/*`, `video/*` or
`font/*` whose first bytes are not a known media signature is not refused and not streamed: it
is read and transformed like `application/octet-stream` (JSON walked, tokens decided), so no
anti-hijacking prefix or `trim()` whitespace the proxy never heard of lets legacy plaintext
through, and an unknown format still reaches the client, token-scanned.
"""

from __future__ import annotations

import json

import pytest
from blackbox_env import PLANTED
from raw_keepalive_portal import (
    KeepAlivePortal,
    Reply,
    exchange,
    first_answer,
    portal_env,
    request_bytes,
    response,
)

SSN = "900-55-4312"
HISTORY = "migraine, 2021"
PLANTED.update((SSN, HISTORY))
DOC = json.dumps({"id": 7, "practice_id": "practice-a", "ssn": SSN, "medical_history": HISTORY})
PATIENT = "/api/practices/practice-a/patients/7"
#: No Authorization header: a caller with no grant, who must only ever see masks.
GET_PATIENT = request_bytes("GET", PATIENT, [("Connection", "close")])

#: What clients cut off or skip before parsing JSON, whatever the Content-Type says: the
#: reviewer's list, the three the old denylist knew, and more `String.prototype.trim` removes.
PREFIXES = {
    "facebook-space": b"for (;;);",
    "while-space": b"while (1);",
    "while-true": b"while(true);",
    "start-marker": b"&&&START&&&",
    "dojo-comment": b"/*-secure-\n",
    "formfeed": b"\f",
    "vtab": b"\v",
    "nbsp": "\xa0".encode(),
    "angular": b")]}',\n",
    "facebook": b"for(;;);",
    "while": b"while(1);",
    "bom": "\ufeff".encode(),
    "line-separator": "\u2028".encode(),
    "ideographic-space": "\u3000".encode(),
    "json-space": b" \r\n\t",
    "none": b"",
}
MEDIA_TYPES = ("image/png", "audio/mpeg", "font/woff2")

#: Real starts of files (what each format's encoder writes first), padded to a few KiB below.
HEADS = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00",
    "gif": b"GIF89a\x10\x00\x10\x00\xf0\x00\x00\xff\xff\xff\x00\x00\x00",
    "webp": b"RIFF\x00\x10\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00",
    "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41",
    "woff2": b"wOF2\x00\x01\x00\x00\x00\x00\x10\x00\x00\x0a\x00\x00\x00\x00\x20\x00",
}
TYPES = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "mp4": "video/mp4",
    "woff2": "font/woff2",
}


def _portal(body: bytes, content_type: str, *, trickle: bool = False) -> KeepAlivePortal:
    """Answers with `body`; `trickle` sends its first 20 bytes one write at a time."""
    whole = response("200 OK", [("Content-Type", content_type)], body)
    head_end = len(whole) - len(body)
    if not trickle:
        return KeepAlivePortal(answer=lambda _request: Reply([whole]))
    parts = [whole[:head_end], *(bytes([b]) for b in body[:20]), body[20:]]
    return KeepAlivePortal(answer=lambda _request: Reply(parts))


def _no_phi_in(data: bytes) -> None:
    """No planted value in `data`, in any encoding a JSON reader could pick."""
    for encoding in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        for value in (SSN, HISTORY):
            assert value.encode(encoding) not in data


@pytest.mark.parametrize("trickle", [False, True], ids=["whole", "trickled"])
@pytest.mark.parametrize("content_type", MEDIA_TYPES)
@pytest.mark.parametrize("prefix", PREFIXES.values(), ids=PREFIXES.keys())
async def test_json_behind_any_prefix_labelled_as_media_shows_no_plaintext(
    tmp_path, prefix, content_type, trickle
):
    """Read and transformed: the legacy plaintext is masked (200) or the body withheld (502)."""
    suffix = b"*/" if prefix.startswith(b"/*") else b""
    portal = _portal(prefix + DOC.encode() + suffix, content_type, trickle=trickle)
    async with portal_env(tmp_path, portal) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    if answer.status == 200:
        assert answer.values("Cache-Control") == ["no-store"]  # set only by the transform
        assert answer.values("Content-Type") == [content_type]
    else:
        assert answer.status == 502
        assert answer.json()["error"] == "unsafe_upstream_body"
    _no_phi_in(data)


@pytest.mark.parametrize("trickle", [False, True], ids=["whole", "trickled"])
@pytest.mark.parametrize("name", HEADS)
async def test_real_media_streams_byte_for_byte_token_and_all(tmp_path, name, trickle):
    """A token deep inside real media reaches the client as ciphertext (THREAT_MODEL.md).

    Transformed, the token would have been masked for this caller: an identical body proves
    the response streamed untouched.
    """
    body = {}
    portal = KeepAlivePortal(answer=lambda _request: Reply(body["parts"]))
    async with portal_env(tmp_path, portal) as env:
        token = env.encrypt("practice-a", "ssn", SSN).encode()
        media = HEADS[name] + bytes(range(256)) * 16 + token + bytes(range(256)) * 4
        whole = response("200 OK", [("Content-Type", TYPES[name])], media)
        cut = len(whole) - len(media) + (len(HEADS[name]) // 2 if trickle else 0)
        body["parts"] = [whole[:cut], whole[cut:]]
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    assert answer.status == 200
    assert answer.rest == media
    assert answer.values("Cache-Control") == []


async def test_unknown_format_labelled_as_media_reaches_the_client_token_scanned(tmp_path):
    """No signature, no refusal: an unknown (or new) format is read, and its tokens masked."""
    body = {}
    portal = KeepAlivePortal(answer=lambda _request: Reply([body["whole"]]))
    async with portal_env(tmp_path, portal) as env:
        token = env.encrypt("practice-a", "ssn", SSN).encode()
        media = b"XFOO\x01\x00\x9a\xfe" + bytes(range(256)) * 4 + token + b"\x00\xff" * 64
        body["whole"] = response("200 OK", [("Content-Type", "image/x-foo")], media)
        data = await exchange(env.proxy_url, GET_PATIENT)
    answer = first_answer(data)
    assert answer.status == 200
    assert token not in data
    assert answer.rest.startswith(media[:1032])  # everything before the token, peek included
    assert answer.rest.endswith(media[-128:])
    assert b"***-**-4312" in answer.rest  # the ssn class's mask, in the token's place
    assert answer.values("Cache-Control") == ["no-store"]
    _no_phi_in(data)


async def test_unknown_format_over_the_response_limit_is_refused(tmp_path):
    """Without a signature the body is read, so limits.max_response_body applies (502)."""
    limits = {"max_request_body": 64 * 1024, "max_response_body": 4096}
    media = b"XFOO" + bytes(8192)
    portal = _portal(media, "video/x-foo")
    async with portal_env(tmp_path, portal, overrides={"limits": limits}) as env:
        data = await exchange(env.proxy_url, GET_PATIENT)
    assert first_answer(data).status == 502
    assert media not in data


async def test_head_and_no_body_statuses_still_stream(tmp_path):
    """HEAD, 204 and 304 have no body to peek at: answered as they come, headers only."""
    answers = {
        "/head": response("200 OK", [("Content-Type", "image/png")], b"", length=False),
        "/nocontent": response("204 No Content", [("Content-Type", "image/png")], b""),
        "/notmodified": response("304 Not Modified", [("Content-Type", "image/png")], b""),
    }
    portal = KeepAlivePortal(answer=lambda request: Reply([answers[request.target]]))
    async with portal_env(tmp_path, portal) as env:
        for target, method, status in [
            ("/head", "HEAD", 200),
            ("/nocontent", "GET", 204),
            ("/notmodified", "GET", 304),
        ]:
            data = await exchange(
                env.proxy_url, request_bytes(method, target, [("Connection", "close")])
            )
            answer = first_answer(data)
            assert answer.status == status
            assert answer.rest == b""

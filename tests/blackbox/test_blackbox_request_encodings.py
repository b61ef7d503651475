"""End to end: a request body's charset, BOM, label or multipart form cannot carry PHI past us.

Each body below once reached the portal with the SSN in clear (found in review). The portal is
the black-box suite's real recording upstream; the assertion is on the bytes it received.
"""

from __future__ import annotations

import json

import orjson
import pytest

SSN = "900-77-4321"
RECORD = {"name": "Pat", "ssn": SSN, "insurance": {"member_id": "M-77"}}


def _plain_forms(record: dict) -> list[bytes]:
    """The SSN as the portal could have stored it, in every encoding used below."""
    return [SSN.encode(enc) for enc in ("utf-8", "utf-16-le", "utf-16-be", "utf-32-le")]


async def _refused(proxy_env, path: str, body: bytes, content_type: str):
    response = await proxy_env.get(
        path, method="POST", data=body, headers={"Content-Type": content_type}
    )
    answer = await response.read()
    assert proxy_env.portal.received == [], "nothing may reach the portal"
    assert SSN.encode() not in answer
    return response.status, json.loads(answer)


@pytest.mark.parametrize(
    ("encoding", "content_type"),
    [
        ("utf-16-le", "application/json; charset=utf-16-le"),
        ("utf-32-le", "application/json; charset=utf-32-le"),
        ("utf-16-le", "application/json"),
        ("utf-8-sig", "text/plain; charset=utf-8-sig"),
        ("utf-8", "application/x-www-form-urlencoded"),
    ],
)
async def test_plaintext_on_an_unconfigured_route_is_refused_in_any_encoding(
    proxy_env, encoding, content_type
):
    body = orjson.dumps(RECORD).decode().encode(encoding)
    status, answer = await _refused(proxy_env, "/api/other", body, content_type)
    assert (status, answer["error"]) == (422, "request_rejected")


async def test_utf7_on_a_write_route_is_415_not_stored_in_clear(proxy_env):
    """`+AHM-sn` is `ssn` to a portal that honours charset=utf-7: refused before forwarding."""
    body = b'{"name": "Pat", "+AHM-sn": "900-77-4321"}'
    status, answer = await _refused(
        proxy_env, "/api/practices/practice-a/patients", body, "application/json; charset=utf-7"
    )
    assert status == 415
    assert "UTF-8" in answer["message"]


async def test_multipart_fields_are_checked_and_clean_uploads_pass(proxy_env):
    boundary = "phi-test-boundary"
    content_type = f"multipart/form-data; boundary={boundary}"

    def form(name: str, value: bytes) -> bytes:
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value
            + f"\r\n--{boundary}--\r\n".encode()
        )

    status, _ = await _refused(proxy_env, "/api/other", form("ssn", SSN.encode()), content_type)
    assert status == 422

    clean = form("note", b"seen today")
    response = await proxy_env.get(
        "/api/other", method="POST", data=clean, headers={"Content-Type": content_type}
    )
    assert response.status == 200
    assert proxy_env.portal.last().body == clean
    for plain in _plain_forms(RECORD):
        assert plain not in proxy_env.portal.last().body


UTF7_JSON = b'{"name": "Pat", "+AHM-sn": "900-77-4321"}'  # `ssn` to a portal reading utf-7


def _mp(boundary: str, *parts: bytes) -> bytes:
    return b"".join(f"--{boundary}\r\n".encode() + p + b"\r\n" for p in parts) + (
        f"--{boundary}--\r\n".encode()
    )


_SSN_PART = b'Content-Disposition: form-data; name="ssn"\r\n\r\n900-77-4321'


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        # the proxy and the portal's aiohttp parsers once read these Content-Types apart
        (UTF7_JSON, 'application/json; x="a; charset=utf-8"; charset=utf-7', 415),
        (UTF7_JSON, "application/json; charset*=utf-8''utf-7", 415),
        (UTF7_JSON, 'text/plain; x="a; charset=utf-8"; charset=utf-7', 415),
        (b"+AHM-sn=900-77-4321", "application/x-www-form-urlencoded; charset*=utf-8''utf-7", 415),
        # percent-escapes decoded in the declared charset: `%2BAHM-sn` is `ssn` under utf-7
        (b"%2BAHM-sn=900-77-4321", "application/x-www-form-urlencoded; charset=utf-7", 415),
        (
            "%73%00%73%00%6E%00=900-77-4321".encode("utf-16-le"),
            "application/x-www-form-urlencoded; charset=utf-16-le",
            415,
        ),
        # boundaries read apart (`a` vs `a;b`, `X` vs `Y`)
        (
            b'--a;b\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
            + _mp("a", _SSN_PART)
            + b"\r\n--a;b--\r\n",
            'multipart/form-data; boundary="a;b"',
            415,
        ),
        (
            b'--X\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
            + _mp("Y", _SSN_PART)
            + b"\r\n--X--\r\n",
            "multipart/form-data; boundary*=utf-8''X; boundary=Y",
            415,
        ),
        # a part name read apart: `note` to the email parser, `ssn` to aiohttp
        (
            _mp(
                "bnd",
                b"Content-Disposition: form-data; name=\"note\"; name*=utf-8''ssn\r\n\r\n"
                b"900-77-4321",
            ),
            "multipart/form-data; boundary=bnd",
            400,
        ),
    ],
)
async def test_bodies_the_portal_reads_differently_never_reach_it(
    proxy_env, body, content_type, status
):
    got, answer = await _refused(proxy_env, "/api/other", body, content_type)
    assert (got, answer["error"]) == (status, "request_rejected")


@pytest.mark.parametrize(
    "content_type",
    [
        'application/json; x="a; charset=utf-8"; charset=utf-7',
        "application/json; charset*=utf-8''utf-7",
    ],
)
async def test_a_charset_trick_on_a_write_route_is_415_not_stored_in_clear(proxy_env, content_type):
    """A `;`-splitting read saw utf-8 and forwarded `+AHM-sn` unencrypted to a utf-7 portal."""
    status, answer = await _refused(
        proxy_env, "/api/practices/practice-a/patients", UTF7_JSON, content_type
    )
    assert status == 415
    assert "Content-Type" in answer["message"]


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc", "abc"),
        ('multipart/form-data; boundary="abc def"', "abc def"),
    ],
)
async def test_plain_multipart_labels_still_pass(proxy_env, content_type, boundary):
    clean = _mp(boundary, b'Content-Disposition: form-data; name="note"\r\n\r\nseen today')
    response = await proxy_env.get(
        "/api/other", method="POST", data=clean, headers={"Content-Type": content_type}
    )
    assert response.status == 200
    assert proxy_env.portal.last().body == clean

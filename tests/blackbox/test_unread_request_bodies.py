"""Request bodies the proxy cannot read never carry a protected field to the portal in clear.

The proxy reads JSON, forms and multipart. An XML, YAML or plain-text body (or a form sent
without a Content-Type) that names a protected field is refused (415), and so is JSON hidden
inside a JSON string (422), on write routes and elsewhere. Such bodies without a protected name,
and binary uploads, pass as sent. Real proxy, real portal; assertions on what the portal got.
"""

import json

import pytest
from blackbox_env import running_proxy_env

SSN = "900-05-5555"
NOTES = "/api/notes"
PATIENTS = "/api/practices/practice-a/patients"


@pytest.fixture
async def env(tmp_path):
    async with running_proxy_env(tmp_path) as env:
        await env.grant("alice", "practice-a")
        yield env


async def _send(env, path, body, content_type):
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = await env.get(path, method="POST", data=body, headers=headers, sub="alice")
    return response.status, json.loads(await response.read())


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (f"<patient><ssn>{SSN}</ssn></patient>".encode(), "application/xml"),
        (f'<patient ssn="{SSN}"/>'.encode(), "text/xml; charset=utf-8"),
        (f"patient:\n  ssn: {SSN}\n".encode(), "application/yaml"),
        (f"ssn={SSN}".encode(), None),  # a form without its Content-Type
        (f"Member_ID: M-7781\nSSN {SSN}".encode(), "text/plain"),
    ],
    ids=["xml-element", "xml-attribute", "yaml", "unlabelled-form", "plain-text"],
)
async def test_an_unreadable_body_naming_a_protected_field_is_refused(env, body, content_type):
    status, answer = await _send(env, NOTES, body, content_type)
    assert status == 415
    assert answer["error"] == "request_rejected"
    assert SSN not in json.dumps(answer)
    assert env.portal.received == []


@pytest.mark.parametrize("path", [NOTES, PATIENTS], ids=["other-route", "write-route"])
async def test_json_inside_a_json_string_naming_a_protected_field_is_refused(env, path):
    inner = json.dumps({"ssn": SSN})
    status, answer = await _send(env, path, json.dumps({"data": inner}), "application/json")
    assert status == 422
    assert "inside a string" in answer["message"]
    assert env.portal.received == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<note><text>seen today</text></note>", "application/xml"),
        (b"note: seen today\n", "application/yaml"),
        (b'{"data": "{\\"colour\\": \\"blue\\"}"}', "application/json"),
        (b"\x89PNG\r\n\x1a\n\x00\x00ssn", "application/octet-stream"),
    ],
    ids=["xml", "yaml", "json-in-string", "binary-upload"],
)
async def test_bodies_without_a_protected_name_pass_as_sent(env, body, content_type):
    status, _ = await _send(env, NOTES, body, content_type)
    assert status == 200
    assert env.portal.last().body == body


async def test_a_token_in_a_text_body_is_not_a_protected_name(env):
    """Tokens spell their class; a body holding only tokens names no field in clear."""
    token = env.encrypt("practice-a", "ssn", SSN)
    body = f"<patient><id>7</id><ref>{token}</ref></patient>".encode()
    status, _ = await _send(env, NOTES, body, "application/xml")
    assert status == 200
    assert env.portal.last().body == body

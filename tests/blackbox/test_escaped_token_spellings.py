r"""A token spelled with escapes never reaches a caller as ciphertext: the page is withheld.

A browser decodes `&#112;hi1.…`, a URL decoder `phi1%2E…`, a script `\x70hi1.…`, a JSON
client that parses JSON out of a JSON string `\\u0070hi1.…`; the proxy cannot rewrite such text
in place, so it answers 502 for every caller rather than hand out the ciphertext (a fingerprint
of an SSN for deterministic classes). Real proxy, real portal.
"""

import json

import pytest
from blackbox_env import running_proxy_env

SSN = "900-31-4159"


@pytest.fixture
async def env(tmp_path):
    async with running_proxy_env(tmp_path) as env:
        await env.grant("alice", "practice-a")
        yield env


def _pages(token):
    tail = token[5:]
    return [
        ("text/html", f"<p>SSN: &#112;hi1.{tail}</p>"),
        ("text/html; charset=utf-8", f"<a href='/p?ssn=phi1%2E{tail.replace('.', '%2E')}'>x</a>"),
        ("application/javascript", f'var s = "\\x70hi1.{tail}";'),
        ("text/css", f'.x::after {{ content: "\\70 hi1.{tail}"; }}'),
        ("application/javascript", f'var s = "{token[:40]}\\x2D{token[41:]}";'),
    ]


def _json_pages(token):
    tail = token[5:]
    inner = '{"ssn": "\\u0070hi1.' + tail + '"}'  # `\u0070`: the inner parse decodes it
    return [
        json.dumps({"data": inner}),  # JSON inside a JSON string
        json.dumps({"link": "/p?ssn=phi1%2E" + tail.replace(".", "%2E")}),
        json.dumps({"html": "<p>&#112;hi1." + tail + "</p>"}),
        '{"html": "\\u0026#112;hi1.' + tail + '"}',  # the entity itself spelled in JSON escapes
        json.dumps({"js": token[:40] + "\\x2D" + token[41:]}),
    ]


JSON_IDS = ["json-in-json", "percent", "entity", "json-escaped-entity", "js-tail"]


@pytest.mark.parametrize("index", range(5), ids=["entity", "percent", "js", "css", "js-tail"])
@pytest.mark.parametrize("sub", [None, "mallory", "alice"], ids=["anon", "stranger", "grantee"])
async def test_an_escaped_token_withholds_the_page_for_every_caller(env, index, sub):
    token = env.encrypt("practice-a", "ssn", SSN, deterministic=True)
    content_type, page = _pages(token)[index]
    env.portal.script("/page", page, content_type=content_type)
    response = await env.get("/page", sub=sub)
    body = await response.read()
    assert response.status == 502
    assert json.loads(body)["error"] == "unsafe_upstream_body"
    assert token[20:].encode() not in body
    assert SSN.encode() not in body


async def test_a_page_with_a_plain_token_is_still_decided_in_place(env):
    token = env.encrypt("practice-a", "ssn", SSN, deterministic=True)
    env.portal.script("/page", f"<p>SSN: {token} &amp; more</p>", content_type="text/html")
    shown = await (await env.get("/page", sub="alice")).read()
    hidden = await (await env.get("/page", sub="mallory")).read()
    assert f"<p>SSN: {SSN} &amp; more</p>".encode() == shown
    assert token.encode() not in hidden
    assert SSN.encode() not in hidden


@pytest.mark.parametrize("index", range(5), ids=JSON_IDS)
@pytest.mark.parametrize("sub", [None, "mallory", "alice"], ids=["anon", "stranger", "grantee"])
async def test_an_escaped_token_in_a_json_string_withholds_the_body_for_every_caller(
    env, index, sub
):
    token = env.encrypt("practice-a", "ssn", SSN, deterministic=True)
    env.portal.script("/api/page", _json_pages(token)[index])
    response = await env.get("/api/page", sub=sub)
    body = await response.read()
    assert response.status == 502
    assert json.loads(body)["error"] == "unsafe_upstream_body"
    assert token[20:].encode() not in body
    assert SSN.encode() not in body


async def test_a_token_in_json_inside_a_json_string_is_still_decided_in_place(env):
    token = env.encrypt("practice-a", "ssn", SSN, deterministic=True)
    env.portal.script("/api/page", json.dumps({"data": json.dumps({"ssn": token})}))
    shown = await (await env.get("/api/page", sub="alice")).read()
    hidden = await (await env.get("/api/page", sub="mallory")).read()
    assert json.loads(json.loads(shown)["data"]) == {"ssn": SSN}
    assert token.encode() not in hidden
    assert SSN.encode() not in hidden
    assert json.loads(json.loads(hidden)["data"])["ssn"].endswith(SSN[-4:])

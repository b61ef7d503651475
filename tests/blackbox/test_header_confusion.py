"""Headers the client reads differently from the proxy, and tokens or identities in headers.

Each case was found in review. The portal is a raw socket (tests/blackbox/raw_portal.py) so it
can send what aiohttp's server never would; every assertion is on the bytes the client got or
the bytes the portal received.
"""

from __future__ import annotations

import gzip
import json
import zlib

import orjson
import pytest
from ascii_deflate_stream import ascii_deflate
from blackbox_env import PLANTED
from raw_portal import raw_exchange, raw_portal_env, raw_response

SSN = "900-11-2222"
HISTORY = "HIV positive (synthetic)"
LEGACY = {
    "id": 1,
    "practice_id": "practice-a",
    "ssn": SSN,
    "insurance": {"member_id": "DEMO-A001-07919"},
    "medical_history": HISTORY,
}
PLANTED.update({SSN, HISTORY, "DEMO-A001-07919"})


@pytest.fixture
async def raw_env(tmp_path):
    async with raw_portal_env(tmp_path) as pair:
        yield pair


def _access_outcome(caplog, request_id: str) -> str:
    (line,) = [
        r.fields
        for r in caplog.records
        if r.name == "phi_proxy.access" and r.fields["request_id"] == request_id
    ]
    return line["outcome"]


def _assert_withheld(answer, caplog) -> None:
    """502 with the proxy's own JSON error, not one byte of the portal's body or headers."""
    assert answer.status == 502
    assert answer.values("Content-Encoding") == []
    error = json.loads(answer.body)
    assert error["error"] == "unsafe_upstream_body"
    assert _access_outcome(caplog, error["request_id"]) == "unsafe_body:conflicting_headers"
    for secret in (b"phi1.", SSN.encode(), HISTORY.encode()):
        assert secret not in answer.body
        assert secret not in answer.head.encode()


class TestContentEncoding:
    @pytest.mark.parametrize("content_type", ["text/html", "text/csv", "application/x-ndjson"])
    async def test_every_content_encoding_line_is_decoded_and_none_is_sent(
        self, raw_env, content_type
    ):
        """`identity` then `gzip`: the proxy undoes both and sends the masked body uncompressed."""
        env, portal = raw_env
        token = env.encrypt("practice-a", "ssn", SSN)
        portal.routes["/p"] = raw_response(
            "200 OK",
            [
                ("Content-Type", content_type),
                ("Content-Encoding", "identity"),
                ("Content-Encoding", "gzip"),
            ],
            gzip.compress(f"<td>{token}</td>\n".encode()),
        )
        answer = await raw_exchange(env.proxy_url, "/p")
        assert answer.status == 200
        assert answer.values("Content-Encoding") == []
        assert answer.body.startswith(b"<td>")
        assert b"phi1." not in answer.body
        assert b"***-**-2222" in answer.body

    async def test_ascii_deflate_json_is_decoded_and_masked(self, raw_env):
        """The reviewer's 7-bit raw DEFLATE of legacy plaintext behind `identity`: masked."""
        env, portal = raw_env
        data = ascii_deflate(LEGACY)
        assert data.isascii()
        portal.routes["/api/practices/practice-a/patients/1"] = raw_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Encoding", "identity"),
                ("Content-Encoding", "deflate"),
            ],
            data,
        )
        answer = await raw_exchange(env.proxy_url, "/api/practices/practice-a/patients/1")
        assert answer.status == 200
        assert answer.values("Content-Encoding") == []
        shown = json.loads(answer.body)
        assert shown["ssn"] == "***-**-2222"
        assert shown["medical_history"] is None
        assert SSN.encode() not in answer.body
        assert HISTORY.encode() not in answer.body

    @pytest.mark.parametrize("named", ["content-encoding", "Content-Type", "content-length"])
    async def test_connection_naming_a_body_header_is_refused(self, raw_env, caplog, named):
        """`Connection: content-encoding` would hide the coding from the proxy only → 502."""
        env, portal = raw_env
        portal.routes["/p"] = raw_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Connection", named),
                ("Content-Encoding", "deflate"),
            ],
            ascii_deflate(LEGACY),
        )
        _assert_withheld(await raw_exchange(env.proxy_url, "/p"), caplog)


class TestContentType:
    @pytest.mark.parametrize(
        "headers",
        [
            [("Content-Type", "text/plain"), ("Content-Type", "application/json")],
            [("Content-Type", "image/png"), ("Content-Type", "application/json")],
            [("Content-Type", "image/png, application/json")],
            [("Content-Type", "application/json, application/json")],
            [("Content-Type", 'image/png; x="a, b, application/json')],  # unclosed quote
        ],
    )
    async def test_two_or_listed_content_types_are_refused(self, raw_env, caplog, headers):
        """Clients take the last media type; the proxy would stream or scan by the first → 502."""
        env, portal = raw_env
        doc = dict(LEGACY, token=env.encrypt("practice-a", "ssn", "321-54-9876"))
        portal.routes["/p"] = raw_response("200 OK", headers, orjson.dumps(doc))
        _assert_withheld(await raw_exchange(env.proxy_url, "/p"), caplog)

    @pytest.mark.parametrize(
        "content_type",
        [
            "text/plain; charset=utf-8; charset=utf-16",
            "application/json; charset=utf-16; CHARSET=utf-8",
            "text/plain; charset*=utf-16''x",
        ],
    )
    async def test_repeated_or_extended_parameters_are_refused(self, raw_env, caplog, content_type):
        """The proxy reads the first charset, some clients the last (or `charset*`) → 502."""
        env, portal = raw_env
        body = orjson.dumps(LEGACY).decode().encode("utf-16-le")
        portal.routes["/p"] = raw_response("200 OK", [("Content-Type", content_type)], body)
        _assert_withheld(await raw_exchange(env.proxy_url, "/p"), caplog)

    @pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le"])
    @pytest.mark.parametrize(
        "content_type", ["application/json", "text/plain", "application/octet-stream"]
    )
    async def test_wide_json_without_a_bom_is_refused(self, raw_env, caplog, codec, content_type):
        """json.loads(bytes) reads UTF-16/32 from the NULs; our byte search would not → 502."""
        env, portal = raw_env
        body = orjson.dumps(LEGACY).decode().encode(codec)
        portal.routes["/p"] = raw_response("200 OK", [("Content-Type", content_type)], body)
        answer = await raw_exchange(env.proxy_url, "/p")
        assert answer.status == 502
        error = json.loads(answer.body)
        assert error["error"] == "unsafe_upstream_body"
        assert _access_outcome(caplog, error["request_id"]) == "unsafe_body:unsupported_charset"
        assert SSN.encode(codec) not in answer.body
        assert SSN.encode() not in answer.body

    async def test_comma_inside_a_quoted_parameter_is_not_a_list(self, raw_env):
        """A quoted parameter may hold a comma; that is one media type and is transformed."""
        env, portal = raw_env
        token = env.encrypt("practice-a", "ssn", SSN)
        portal.routes["/p"] = raw_response(
            "200 OK", [("Content-Type", 'text/csv; header="a,b"')], f"{token}\n".encode()
        )
        answer = await raw_exchange(env.proxy_url, "/p")
        assert answer.status == 200
        assert answer.body == b"***-**-2222\n"


class TestResponseHeaders:
    async def test_reason_phrase_is_the_standard_one(self, raw_env):
        """A token as the portal's reason phrase never reaches the client, streamed or not."""
        env, portal = raw_env
        token = env.encrypt("practice-a", "ssn", SSN)
        portal.routes["/json"] = raw_response(
            f"200 {token}", [("Content-Type", "application/json")], b"{}"
        )
        portal.routes["/png"] = raw_response(
            f"404 {token}", [("Content-Type", "image/png")], b"\x89PNG"
        )
        portal.routes["/odd"] = raw_response(
            f"299 {token}", [("Content-Type", "application/json")], b"{}"
        )
        assert (await raw_exchange(env.proxy_url, "/json")).status_line == "HTTP/1.1 200 OK"
        assert (await raw_exchange(env.proxy_url, "/png")).status_line == "HTTP/1.1 404 Not Found"
        assert (await raw_exchange(env.proxy_url, "/odd")).status_line.rstrip() == "HTTP/1.1 299"

    @pytest.mark.parametrize("path", ["/json", "/png"])
    async def test_tokens_in_headers_are_masked_even_for_a_granted_caller(self, raw_env, path):
        """Location, Content-Disposition, custom headers: masked, never decrypted."""
        env, portal = raw_env
        await env.grant("alice", "practice-a")
        token = env.encrypt("practice-a", "ssn", SSN, deterministic=True)
        headers = [
            ("Location", f"/api/practices/practice-a/patients?ssn={token}"),
            ("Content-Disposition", f'attachment; filename="{token}.pdf"'),
            ("X-Patient-SSN", token),
            ("X-Plain", "kept"),
        ]
        portal.routes["/json"] = raw_response(
            "302 Found",
            [*headers, ("Content-Type", "application/json")],
            orjson.dumps({"ssn": token}),
        )
        portal.routes["/png"] = raw_response(
            "200 OK", [*headers, ("Content-Type", "image/png")], b"\x89PNG"
        )
        answer = await raw_exchange(env.proxy_url, path, headers=env.auth("alice"))
        assert "phi1." not in answer.head
        assert SSN not in answer.head
        assert answer.values("Location") == ["/api/practices/practice-a/patients?ssn=[redacted]"]
        assert answer.values("Content-Disposition") == ['attachment; filename="[redacted].pdf"']
        assert answer.values("X-Patient-SSN") == ["[redacted]"]
        assert answer.values("X-Plain") == ["kept"]
        if path == "/json":
            assert json.loads(answer.body) == {"ssn": SSN}  # the body is still decrypted

    async def test_a_header_with_prefix_residue_is_dropped(self, raw_env):
        """A value or name still holding `phi1.` after masking (malformed token) is removed."""
        env, portal = raw_env
        portal.routes["/p"] = raw_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("X-Broken", "phi1.r.zz.ssn.short"),
                ("phi1.r.0123456789abcdef.ssn.AAAAAAAAAAAAAAAAAAAAAAAA", "1"),
                ("X-Plain", "kept"),
            ],
            b"{}",
        )
        answer = await raw_exchange(env.proxy_url, "/p")
        assert answer.status == 200
        assert "phi1." not in answer.head
        assert answer.values("X-Broken") == []
        assert answer.values("X-Plain") == ["kept"]

    @pytest.mark.parametrize("path", ["/json", "/png"])
    async def test_encoded_or_upper_case_tokens_drop_the_header(self, raw_env, path):
        """`phi1%2Er%2E…` or `PHI1.…` escapes the token grammar: the header is dropped."""
        env, portal = raw_env
        token = env.encrypt("practice-a", "ssn", SSN)
        headers = [
            ("Location", "/s?q=" + token.replace(".", "%2E")),
            ("Link", f"</{token.upper()}>; rel=next"),
            ("X-Plain", "kept"),
        ]
        portal.routes["/json"] = raw_response(
            "302 Found", [*headers, ("Content-Type", "application/json")], b"{}"
        )
        portal.routes["/png"] = raw_response(
            "200 OK", [*headers, ("Content-Type", "image/png")], b"\x89PNG"
        )
        answer = await raw_exchange(env.proxy_url, path)
        assert "phi1" not in answer.head.lower()
        assert answer.values("Location") == []
        assert answer.values("Link") == []
        assert answer.values("X-Plain") == ["kept"]

    async def test_cdn_cache_headers_are_removed_from_transformed_answers(self, raw_env):
        """A CDN honouring CDN-Cache-Control (RFC 9213) must not store decrypted plaintext."""
        env, portal = raw_env
        await env.grant("alice", "practice-a")
        cdn = [
            ("CDN-Cache-Control", "public, max-age=3600"),
            ("Surrogate-Control", "max-age=3600"),
            ("Cloudflare-CDN-Cache-Control", "max-age=3600"),
        ]
        token = env.encrypt("practice-a", "ssn", SSN)
        portal.routes["/phi"] = raw_response(
            "200 OK", [("Content-Type", "application/json"), *cdn], orjson.dumps({"ssn": token})
        )
        portal.routes["/plain"] = raw_response(
            "200 OK", [("Content-Type", "application/json"), *cdn], b'{"n": 1}'
        )
        answer = await raw_exchange(env.proxy_url, "/phi", headers=env.auth("alice"))
        assert json.loads(answer.body) == {"ssn": SSN}
        assert answer.values("Cache-Control") == ["no-store"]
        assert "cdn-cache-control" not in answer.head.lower()
        assert "surrogate-control" not in answer.head.lower()
        untouched = await raw_exchange(env.proxy_url, "/plain")
        assert untouched.values("CDN-Cache-Control") == ["public, max-age=3600"]

    async def test_cache_headers_that_outrank_no_store_are_removed_from_transformed_answers(
        self, raw_env
    ):
        """X-Accel-Expires outranks Cache-Control in nginx's cache: removed, or it keeps plaintext.

        Edge-Control (Akamai), Fastly-Surrogate-Control and X-LiteSpeed-Cache-Control likewise
        override `no-store` in their caches, so a revoked caller could be served the plaintext
        stored for them (or another caller) while the grant was active.
        """
        env, portal = raw_env
        await env.grant("alice", "practice-a")
        overriding = [
            ("X-Accel-Expires", "3600"),
            ("Edge-Control", "!no-store, cache-maxage=3600"),
            ("Fastly-Surrogate-Control", "max-age=3600"),
            ("X-LiteSpeed-Cache-Control", "public, max-age=3600"),
        ]
        token = env.encrypt("practice-a", "ssn", SSN)
        portal.routes["/phi"] = raw_response(
            "200 OK",
            [("Content-Type", "application/json"), *overriding],
            orjson.dumps({"ssn": token}),
        )
        portal.routes["/plain"] = raw_response(
            "200 OK", [("Content-Type", "application/json"), *overriding], b'{"n": 1}'
        )
        answer = await raw_exchange(env.proxy_url, "/phi", headers=env.auth("alice"))
        assert json.loads(answer.body) == {"ssn": SSN}
        assert answer.values("Cache-Control") == ["no-store"]
        for name, _ in overriding:
            assert answer.values(name) == []
        untouched = await raw_exchange(env.proxy_url, "/plain")
        assert untouched.values("X-Accel-Expires") == ["3600"]


SPOOFED_IDENTITY = {
    "X-Forwarded-Client-Cert": "By=spiffe://clinic/admin",
    "X-Consumer-Username": "spoofed-admin",
    "X-Consumer-Id": "spoofed-admin",
    "X-Consumer-Custom-Id": "spoofed-admin",
    "X-Userinfo": "spoofed-admin",
    "X_WEBAUTH_USER": "spoofed-admin",
    "X-JWT-Assertion": "spoofed-admin",
    "X-SSL-Client-S-DN": "CN=spoofed-admin",
    "X-SSL-Client-Cert": "spoofed-admin",
    "X-SSL-Client-Verify": "SUCCESS-spoofed",
    "X-Client-Cert": "spoofed-admin",
    "X-Endpoint-API-UserInfo": "spoofed-admin",
    "X-Original-URL": "/spoofed-path",
    "X-Rewrite-URL": "/spoofed-path",
    "X-Original-URI": "/spoofed-path",
}
SPOOFED_FORWARDING = {
    "X-Forwarded-Port": "4443",
    "X-Forwarded-Prefix": "/spoofed-prefix",
    "X-Forwarded-Server": "spoofed.internal",
    "X-Forwarded-SSL": "on",
    "True-Client-IP": "10.66.66.66",
    "X-Client-IP": "10.66.66.66",
    "X-Cluster-Client-IP": "10.66.66.66",
    "CF-Connecting-IP": "10.66.66.66",
    "Fastly-Client-IP": "10.66.66.66",
}


class TestRequestHeaders:
    async def test_gateway_identity_path_and_forwarding_headers_never_reach_the_portal(
        self, raw_env
    ):
        """Kong, Envoy, nginx-cert, IIS-rewrite and client-IP headers from a client are removed."""
        env, portal = raw_env
        portal.routes["/api/x"] = raw_response("200 OK", [("Content-Type", "text/plain")], b"ok")
        answer = await raw_exchange(
            env.proxy_url, "/api/x", headers={**SPOOFED_IDENTITY, **SPOOFED_FORWARDING}
        )
        assert answer.status == 200
        head = portal.received[-1].head
        for name in (*SPOOFED_IDENTITY, *SPOOFED_FORWARDING):
            assert f"\r\n{name.lower()}:" not in head.lower(), name
        for value in ("spoofed", "10.66.66.66", "4443"):
            assert value not in head

    async def test_trusted_peer_keeps_forwarding_headers_but_never_path_overrides(self, tmp_path):
        """From a configured load balancer the client-IP headers pass; path overrides never do."""
        overrides = {"headers": {"trusted_proxies": ["127.0.0.0/8"]}}
        async with raw_portal_env(tmp_path, overrides=overrides) as (env, portal):
            portal.routes["/api/x"] = raw_response("200 OK", [("Content-Type", "text/plain")], b"")
            await raw_exchange(
                env.proxy_url, "/api/x", headers={**SPOOFED_IDENTITY, **SPOOFED_FORWARDING}
            )
        head = portal.received[-1].head.lower()
        assert "\r\nx-forwarded-port: 4443" in head
        assert "\r\ncf-connecting-ip: 10.66.66.66" in head
        assert "spoofed-admin" not in head
        assert "/spoofed-path" not in head


class TestRequestContentEncoding:
    @pytest.mark.parametrize(
        ("coding", "encode"),
        [
            ("gzip", gzip.compress),
            ("deflate", zlib.compress),
            ("DEFLATE", lambda data: zlib.compress(data)[2:-4]),  # raw deflate, any case
        ],
    )
    async def test_compressed_write_is_forwarded_decoded_and_unlabelled(
        self, raw_env, coding, encode
    ):
        """The server inflates the body; the portal gets the encrypted JSON without the label."""
        env, portal = raw_env
        portal.routes["/api/practices/practice-a/patients"] = raw_response(
            "201 Created", [("Content-Type", "application/json")], b"{}"
        )
        plain = orjson.dumps({"name": "Pat", "ssn": SSN})
        await env.grant("alice", "practice-a")  # staff registering a patient
        answer = await raw_exchange(
            env.proxy_url,
            "/api/practices/practice-a/patients",
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Content-Encoding": coding,
                **env.auth("alice"),
            },
            body=encode(plain),
        )
        assert answer.status == 201
        received = portal.received[-1]
        assert "content-encoding" not in received.head.lower()
        stored = json.loads(received.body)
        assert stored["name"] == "Pat"
        assert env.keyring.open(stored["ssn"]).plaintext == SSN
        assert SSN.encode() not in received.body

    @pytest.mark.parametrize(
        "headers",
        [
            [("Content-Encoding", "compress")],
            [("Content-Encoding", "gzip, gzip")],
            [("Content-Encoding", "x-gzip")],
            [("Content-Encoding", "identity"), ("Content-Encoding", "gzip")],
        ],
    )
    async def test_body_in_a_coding_the_server_did_not_undo_is_415(self, raw_env, headers):
        """Such a body would reach the portal compressed and unread by the request guard."""
        env, portal = raw_env
        answer = await raw_exchange(
            env.proxy_url,
            "/api/other",
            method="POST",
            headers=[("Content-Type", "application/json"), *headers],
            body=gzip.compress(gzip.compress(orjson.dumps({"ssn": SSN}))),
        )
        assert answer.status == 415
        assert json.loads(answer.body)["error"] == "unsupported_request_encoding"
        assert portal.received == []

    async def test_inflated_size_is_bounded_by_max_request_body(self, raw_env):
        """A small gzip body that inflates past limits.max_request_body (64 KiB here) is 413."""
        env, portal = raw_env
        bomb = gzip.compress(b'{"pad": "' + b"0" * (8 * 1024 * 1024) + b'"}')
        assert len(bomb) < 64 * 1024
        answer = await raw_exchange(
            env.proxy_url,
            "/api/other",
            method="POST",
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            body=bomb,
        )
        assert answer.status == 413
        assert json.loads(answer.body)["error"] == "request_too_large"
        assert portal.received == []

"""Forwarding hygiene and the bodies the proxy refuses to pass, end to end."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from blackbox_env import running_proxy_env

SSN = "321-54-9876"


class TestUnsafeBodies:
    async def test_refused_bodies_get_502_without_content(self, proxy_env):
        """Duplicate keys, deep nesting, invalid UTF-8, lone surrogates and NaN → 502, no body."""
        token = proxy_env.encrypt("practice-a", "ssn", SSN)
        cases = {
            "/dup": f'{{"ssn": "{token}", "ssn": "x"}}'.encode(),
            "/deep": b"[" * 10_000 + f'"{token}"'.encode() + b"]" * 10_000,
            "/utf8": b'{"ssn": "' + token.encode() + b'", "x": "\xff\xfe"}',
            "/surrogate": b'{"ssn": "' + token.encode() + b'", "x": "\\ud800"}',
            "/nan": b'{"ssn": "' + token.encode() + b'", "x": NaN}',
        }
        for path, body in cases.items():
            proxy_env.portal.script(path, body)
            response = await proxy_env.get(path)
            raw = await response.read()
            assert response.status == 502, path
            assert b"phi1." not in raw, path
            assert json.loads(raw)["error"] == "unsafe_upstream_body", path

    async def test_oversized_response_is_refused_not_streamed(self, proxy_env):
        """A JSON body over limits.max_response_body is a 502, never passed untransformed."""
        token = proxy_env.encrypt("practice-a", "ssn", SSN)
        big = orjson.dumps({"ssn": token, "pad": "x" * (2 * 1024 * 1024)})
        proxy_env.portal.script("/big", big)
        response = await proxy_env.get("/big")
        assert response.status == 502
        assert b"phi1." not in await response.read()

    async def test_oversized_request_is_413(self, proxy_env, caplog):
        """A request body over limits.max_request_body is refused before the portal sees it.

        The answer is the proxy's JSON error like every other, and the access line says why.
        """
        response = await proxy_env.get("/upload", method="POST", data=b"x" * (128 * 1024))
        body = json.loads(await response.read())
        assert response.status == 413
        assert proxy_env.portal.received == []
        assert body["error"] == "request_too_large"
        assert "limits.max_request_body" in body["message"]
        assert body["request_id"] == response.headers["X-Request-Id"]
        assert _access_line(caplog, body["request_id"])["outcome"] == "request_too_large"

    async def test_gzip_body_is_decoded_and_transformed(self, proxy_env):
        """A portal that gzips anyway gets its body decoded, transformed and sent uncompressed."""
        await proxy_env.grant("alice", "practice-a")
        doc = {"ssn": proxy_env.encrypt("practice-a", "ssn", SSN)}
        proxy_env.portal.script(
            "/gz", gzip.compress(orjson.dumps(doc)), headers={"Content-Encoding": "gzip"}
        )
        response = await proxy_env.get("/gz", sub="alice")
        assert "Content-Encoding" not in response.headers
        assert json.loads(await response.read()) == {"ssn": SSN}
        masked = await (await proxy_env.get("/gz")).read()
        assert json.loads(masked) == {"ssn": "***-**-9876"}

    async def test_gzip_bomb_is_refused(self, proxy_env):
        """A tiny gzip body that inflates past the response limit → 502."""
        bomb = gzip.compress(b'{"pad": "' + b"0" * (20 * 1024 * 1024) + b'"}')
        proxy_env.portal.script("/bomb", bomb, headers={"Content-Encoding": "gzip"})
        response = await proxy_env.get("/bomb")
        assert response.status == 502

    async def test_unknown_encoding_on_json_is_refused(self, proxy_env):
        """A Content-Encoding the proxy cannot decode on a PHI-capable body → 502."""
        proxy_env.portal.script("/br", b"\x0b\x02\x80", headers={"Content-Encoding": "br"})
        assert (await proxy_env.get("/br")).status == 502

    async def test_partial_content_is_refused(self, proxy_env):
        """A 206 from the portal on a body that needs transforming → 502; Range never forwarded."""
        proxy_env.portal.script("/partial", b'{"a": 1', status=206)
        response = await proxy_env.get("/partial", headers={"Range": "bytes=0-5"})
        assert response.status == 502
        assert "range" not in proxy_env.portal.last().headers


class TestForwarding:
    async def test_path_query_and_method_are_preserved(self, proxy_env):
        """Every method and the raw path and query reach the portal unchanged."""
        for method in ("GET", "DELETE", "PUT", "PATCH", "OPTIONS"):
            await proxy_env.get("/a/b%20c/d?x=1&y=%2F&x=2", method=method)
            received = proxy_env.portal.last()
            assert received.method == method
            assert received.path_qs == "/a/b%20c/d?x=1&y=%2F&x=2"

    @pytest.mark.parametrize("content_type", ["application/json", "image/png"])
    async def test_file_substitution_headers_never_reach_the_client(self, proxy_env, content_type):
        """X-Accel-Redirect and friends would make a front end serve a file the proxy never saw."""
        substitutions = {
            "X-Accel-Redirect": "/internal/patients-export.csv",
            "X-Sendfile": "/srv/exports/patients.csv",
            "X-LIGHTTPD-send-file": "/srv/exports/patients.csv",
            "X-Lighttpd-Send-Tempfile": "/var/spool/portal/patients.csv",
        }
        body = b"\x89PNG\r\n\x1a\n" if content_type == "image/png" else b'{"ok": true}'
        proxy_env.portal.script(
            "/export", body, headers={"Content-Type": content_type, **substitutions}
        )
        response = await proxy_env.get("/export")
        assert response.status == 200
        assert not set(map(str.lower, substitutions)) & set(map(str.lower, response.headers))

    async def test_spoofed_identity_and_forwarding_headers_never_reach_the_portal(self, proxy_env):
        """Identity and X-Forwarded-* headers from an untrusted client are removed or replaced."""
        await proxy_env.get(
            "/whoami",
            headers={
                "X-Remote-User": "admin",
                "remote_user": "admin",
                "X-FORWARDED-USER": "admin",
                "X-Forwarded-For": "10.9.9.9",
                "X-Forwarded-Host": "evil.example",
                "Forwarded": "for=10.9.9.9",
            },
        )
        received = proxy_env.portal.last().headers
        flat = json.dumps(received)
        assert "admin" not in flat
        assert "10.9.9.9" not in flat
        assert "evil.example" not in flat
        assert received["x-forwarded-for"] == ["127.0.0.1"]

    async def test_portal_identity_headers_from_the_client_never_reach_the_portal(self, proxy_env):
        """Headers a portal behind mod_auth_*, oauth2-proxy or mTLS might trust are removed."""
        spoofed = {
            "X-Remote-Email": "admin@clinic.test",
            "X-Remote-Groups": "admins",
            "X-Auth-Roles": "admin",
            "X-Preferred-Username": "admin",
            "X_User_Name": "admin",
            "x-authenticated-email": "admin@clinic.test",
            "SSL_CLIENT_S_DN": "CN=admin",
            "SSL-Client-Verify": "SUCCESS",
        }
        await proxy_env.get("/whoami", headers=spoofed)
        received = proxy_env.portal.last().headers
        for name in spoofed:
            assert name.lower() not in received
        assert "admin" not in json.dumps(received)

    async def test_connection_header_cannot_strip_the_proxys_own_headers(self, proxy_env):
        """`Connection: X-Forwarded-For, X-Request-Id` does not remove what the proxy sets."""
        await proxy_env.get("/conn", headers={"Connection": "X-Forwarded-For, X-Request-Id"})
        received = proxy_env.portal.last().headers
        assert received["x-forwarded-for"] == ["127.0.0.1"]
        assert len(received["x-request-id"]) == 1
        assert received["accept-encoding"] == ["identity"]

    async def test_head_has_no_body_and_trace_is_refused(self, proxy_env):
        """HEAD is forwarded and answered without a body; TRACE is refused with 405."""
        head = await proxy_env.get("/api/x", method="HEAD")
        assert head.status == 200
        assert await head.read() == b""
        trace = await proxy_env.get("/api/x", method="TRACE")
        assert trace.status == 405
        assert all(r.method != "TRACE" for r in proxy_env.portal.received)

    async def test_binary_media_streams_untouched(self, proxy_env):
        """An image streams through byte for byte, without the transform."""
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 100
        proxy_env.portal.script("/logo.png", png, content_type="image/png")
        response = await proxy_env.get("/logo.png")
        assert await response.read() == png
        assert response.headers.get("Cache-Control") != "no-store"

    @pytest.mark.parametrize(
        "body",
        [
            b'{"practice_id": "practice-a", "ssn": "321-54-9876"}',
            b'  [{"ssn": "321-54-9876"}]',
            '{"ssn": "321-54-9876"}'.encode("utf-16"),
        ],
        ids=["json", "json-array", "utf-16-json"],
    )
    async def test_json_labelled_as_an_image_never_streams_plaintext(self, proxy_env, body):
        """JSON labelled image/png has no media signature: transformed like octet-stream.

        `fetch().json()` ignores the label, so it is masked (or 502), never streamed.
        """
        proxy_env.portal.script("/photo.png", body, content_type="image/png")
        response = await proxy_env.get("/photo.png")
        answer = await response.read()
        assert b"321-54-9876" not in answer
        assert "321-54-9876".encode("utf-16-le") not in answer
        assert response.status in {200, 502}
        if response.status == 200:
            assert response.headers["Cache-Control"] == "no-store"

    async def test_a_token_in_real_media_streams_as_ciphertext_only(self, proxy_env):
        """A PNG streams untouched: a token inside it reaches the client as ciphertext only.

        Never plaintext, as THREAT_MODEL.md states; the caller without a grant learns nothing.
        """
        token = proxy_env.encrypt("practice-a", "ssn", SSN)
        body = b"\x89PNG\r\n\x1a\n" + token.encode() + bytes(600)
        proxy_env.portal.script("/photo.png", body, content_type="image/png")
        response = await proxy_env.get("/photo.png")
        answer = await response.read()
        assert response.status == 200
        assert answer == body
        assert SSN.encode() not in answer

    async def test_non_phi_json_is_byte_identical(self, proxy_env):
        """A JSON body without selected keys or tokens comes back exactly as the portal sent it."""
        body = b'{ "appointments" : [ {"id": 1, "when": "2026-12-01T09:00"} ],"n":1.50 }'
        proxy_env.portal.script("/appts", body)
        assert await (await proxy_env.get("/appts")).read() == body


def _access_line(caplog, request_id: str) -> dict:
    """The fields of the one access-log line of this request."""
    (line,) = [
        r.fields
        for r in caplog.records
        if r.name == "phi_proxy.access" and r.fields["request_id"] == request_id
    ]
    return line


class TestFailures:
    async def test_invalid_bearer_token_is_401_with_challenge(self, proxy_env, caplog):
        """A bad JWT is refused with 401 and WWW-Authenticate, and nothing reaches the portal.

        Which check failed is in the access log only, never in the answer (a forger learns
        nothing from it).
        """
        response = await proxy_env.get("/api/x", headers={"Authorization": "Bearer not.a.jwt"})
        body = json.loads(await response.read())
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert proxy_env.portal.received == []
        assert body["error"] == "unauthenticated"
        assert "malformed" not in json.dumps(body)
        assert _access_line(caplog, body["request_id"])["outcome"] == "unauthenticated:malformed"

    async def test_the_access_line_never_carries_an_id_like_path_segment(self, proxy_env, caplog):
        """An SSN in the path (plain or percent-encoded) is logged as {id}, never as typed."""
        proxy_env.portal.script("/api/patients/by-ssn/321-54-9876", b"{}")
        for path in ("/api/patients/by-ssn/321-54-9876", "/api/patients/by-ssn/321%2D54%2D9876"):
            response = await proxy_env.get(path)
            line = _access_line(caplog, response.headers["X-Request-Id"])
            assert line["path"] == "/api/patients/by-ssn/{id}"
        ours = [str(r.__dict__) for r in caplog.records if r.name.startswith("phi_proxy")]
        assert not [line for line in ours if "321-54-9876" in line]  # (the test portal logs it)

    async def test_upstream_timeout_is_504(self, tmp_path):
        """A portal slower than upstream.timeout gives 504 with a request id."""
        async with running_proxy_env(tmp_path, overrides={"upstream": {"timeout": 1}}) as env:
            env.portal.script("/slow", b"{}", delay=4)
            response = await env.get("/slow")
            body = json.loads(await response.read())
        assert response.status == 504
        assert body["request_id"] == response.headers["X-Request-Id"]

    async def test_upstream_unreachable_is_502(self, proxy_env, caplog):
        """When the portal is down the proxy answers 502 with a small JSON error.

        The access line names which of `upstream_unavailable`'s causes it was (`detail`).
        """
        for server in proxy_env._servers[1:]:
            await server.close()
        response = await proxy_env.get("/api/x")
        body = json.loads(await response.read())
        assert response.status == 502
        assert body["error"] == "upstream_unavailable"
        line = _access_line(caplog, body["request_id"])
        assert (line["outcome"], line["detail"]) == (
            "upstream_unavailable",
            "cannot connect to the portal",
        )


class TestWriteRoutes:
    async def test_write_route_encrypts_before_the_portal_sees_it(self, proxy_env):
        """PHI posted on a write route reaches the portal only as practice-bound tokens."""
        await proxy_env.grant("alice", "practice-a")  # staff registering a patient
        body = {"name": "New Patient", "ssn": SSN, "insurance": {"member_id": "M-77"}}
        response = await proxy_env.get(
            "/api/practices/practice-a/patients", method="POST", json=body, sub="alice"
        )
        assert response.status == 200
        stored = json.loads(proxy_env.portal.last().body)
        assert stored["name"] == "New Patient"
        assert stored["ssn"].startswith("phi1.d.")
        assert stored["insurance"]["member_id"].startswith("phi1.r.")
        assert proxy_env.keyring.open(stored["ssn"]).plaintext == SSN
        assert proxy_env.keyring.open(stored["ssn"]).practice == "practice-a"
        assert SSN.encode() not in proxy_env.portal.last().body

    async def test_write_route_with_unknown_practice_is_422_and_forwards_nothing(
        self, proxy_env, caplog
    ):
        """A practice without keys is refused with 422; the portal receives nothing.

        The access line says why (`rejected`), so the operator need not ask for the body.
        """
        response = await proxy_env.get(
            "/api/practices/practice-zzz/patients", method="POST", json={"ssn": SSN}
        )
        body = await response.read()
        assert response.status == 422
        assert SSN.encode() not in body
        assert proxy_env.portal.received == []
        assert _access_line(caplog, json.loads(body)["request_id"])["rejected"] == (
            "practice_has_no_key"
        )

    async def test_plaintext_phi_on_an_unconfigured_route_is_refused(self, proxy_env, caplog):
        """PHI in clear on a route that is not a write route is refused, not forwarded."""
        response = await proxy_env.get("/api/other", method="POST", json={"ssn": SSN})
        assert response.status == 422
        assert proxy_env.portal.received == []
        line = _access_line(caplog, json.loads(await response.read())["request_id"])
        assert line["outcome"] == "request_rejected"
        assert line["rejected"] == "plaintext_outside_write_route"


class TestMultipartResponses:
    """Multipart bodies reach the part-by-part check through the real proxy."""

    @pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
    async def test_an_encoded_json_part_with_legacy_plaintext_is_withheld(
        self, proxy_env, encoding
    ):
        import base64
        import quopri

        row = json.dumps({"practice_id": "practice-a", "ssn": "321-54-9876"}).encode()
        payload = base64.b64encode(row) if encoding == "base64" else quopri.encodestring(row)
        body = (
            b"--b\r\nContent-Type: application/json\r\nContent-Transfer-Encoding: "
            + encoding.encode()
            + b"\r\n\r\n"
            + payload
            + b"\r\n--b--\r\n"
        )
        proxy_env.portal.script("/export", body, content_type="multipart/mixed; boundary=b")
        response = await proxy_env.get("/export")
        answer = await response.read()
        assert response.status == 502
        assert json.loads(answer)["error"] == "unsafe_upstream_body"
        assert payload not in answer

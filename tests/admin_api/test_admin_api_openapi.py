"""The OpenAPI document: served equals committed, and schemathesis finds nothing against it.

schemathesis (a property-based API tester) reads /openapi.json from the live listener — a real
SQLite grant store, a real JWKS and admin token, the real audit trail — and sends generated
valid and invalid requests to every operation, checking status codes, content types, headers
and answer schemas against the document, and that no request gets a 5xx.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from admin_helpers import ADMIN_SUB, ROLE

from proxy.admin_api.openapi import render_openapi

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "admin-api.openapi.json"
ST = Path(sys.executable).parent / "st"


class TestDocument:
    async def test_served_document_is_the_committed_one(self, admin_env):
        """GET /openapi.json (no token needed) is byte for byte docs/admin-api.openapi.json."""
        _env, api = admin_env
        async with aiohttp.ClientSession() as http, http.get(api.base + "/openapi.json") as r:
            served = await r.read()
        assert r.status == 200
        assert served == COMMITTED.read_bytes(), (
            "docs/admin-api.openapi.json is stale: run `make openapi`"
        )
        assert served == render_openapi()

    def test_document_is_openapi_3_1_with_bearer_security(self):
        """Every operation requires the admin bearer scheme and documents 401 and 403."""
        import json

        document = json.loads(COMMITTED.read_text())
        assert document["openapi"] == "3.1.0"
        assert document["security"] == [{"adminBearer": []}]
        for path, operations in document["paths"].items():
            for method, operation in operations.items():
                assert {"401", "403", "503"} <= set(operation["responses"]), (method, path)


class TestSchemathesis:
    async def test_schemathesis_finds_no_failure(self, admin_env, tmp_path):
        """Every check schemathesis has, over every operation, passes against the live API."""
        env, api = admin_env
        await env.grant("nurse", "practice-a")  # something to list, review and report on
        token = env.issuer.mint(
            ADMIN_SUB, now=datetime.now(UTC).timestamp(), ttl=3600, roles=[ROLE]
        )
        process = await asyncio.create_subprocess_exec(
            str(ST),
            "--config-file",
            str(Path(__file__).with_name("schemathesis.toml")),
            "run",
            f"{api.base}/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--seed",
            "20261207",
            "--report-dir",
            str(tmp_path / "st-report"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        out, _ = await process.communicate()
        text = out.decode(errors="replace")
        assert process.returncode == 0, text[-6000:]
        assert "No issues found" in text or "passed" in text, text[-3000:]

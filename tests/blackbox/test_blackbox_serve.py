"""`phi-proxy serve` and `check-config` as real processes: readiness, traffic, graceful stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
import pytest
import yaml
from aiohttp.test_utils import TestServer
from blackbox_env import PLANTED, write_env_files
from blackbox_portal import RecordingPortal
from serve_process import PHI_PROXY, free_port, wait_ready

from proxy.grants import GrantRequest, SQLiteGrantStore
from tests.cli_process import start_cli

pytestmark = pytest.mark.slow
SSN = "219-09-9999"


@pytest.fixture
async def served(tmp_path, request):
    """A portal in this process and `phi-proxy serve` as a process in front of it (start_cli)."""
    workers = getattr(request, "param", 1)
    portal = RecordingPortal()
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    port, admin_port = free_port(), free_port()
    config_path, settings, issuer = write_env_files(
        tmp_path,
        str(portal_server.make_url("")).rstrip("/"),
        overrides={
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
        },
    )
    now = datetime.now(UTC)
    store = SQLiteGrantStore(settings.grants.sqlite_path, max_ttl=settings.grants.max_ttl)
    await store.add(
        GrantRequest(
            subject=issuer_subject(issuer, "alice"),
            practice="practice-a",
            field_classes=None,
            expires_at=now + timedelta(hours=1),
            created_by="tests",
            reason="serve test",
        ),
        now=now,
    )
    await store.close()
    stderr_path = tmp_path / "proxy.stderr"
    with stderr_path.open("wb") as stderr:
        process = await start_cli(
            [str(PHI_PROXY), "serve", "-c", str(config_path), "--workers", str(workers)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        await wait_ready(f"http://127.0.0.1:{admin_port}/readyz", process)
        yield {
            "process": process,
            "url": f"http://127.0.0.1:{port}",
            "admin": f"http://127.0.0.1:{admin_port}",
            "portal": portal,
            "issuer": issuer,
            "settings": settings,
            "stderr": stderr_path,
            "keyring_path": settings.keys.keystore,
        }
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await portal_server.close()
        logs = stderr_path.read_text(encoding="utf-8", errors="replace")
        for value in PLANTED | {SSN}:
            assert value not in logs, "a planted PHI value reached the proxy's log output"


def issuer_subject(issuer, sub):
    from proxy.identity import Subject

    return Subject(issuer.issuer, sub)


def _token(issuer, sub):
    return issuer.mint(sub, now=datetime.now(UTC).timestamp())


class TestServeProcess:
    async def test_serves_decides_and_stops_gracefully(self, served):
        """A served proxy decrypts for alice, masks for anonymous, and exits 0 on SIGTERM."""
        from keys.settings import open_keyring

        keyring = open_keyring(served["settings"].keys)
        PLANTED.add(SSN)
        served["portal"].script(
            "/api/p1",
            orjson.dumps(
                {"practice_id": "practice-a", "ssn": keyring.encrypt("practice-a", "ssn", SSN)}
            ),
            delay=0.5,
        )
        headers = {"Authorization": f"Bearer {_token(served['issuer'], 'alice')}"}
        async with aiohttp.ClientSession() as http:
            async with http.get(served["url"] + "/api/p1", headers=headers) as response:
                assert json.loads(await response.read())["ssn"] == SSN
            async with http.get(served["url"] + "/api/p1") as response:
                assert json.loads(await response.read())["ssn"] == "***-**-9999"
            async with http.get(served["admin"] + "/healthz") as response:
                assert response.status == 200
            # Start a slow request, then ask the proxy to stop: the request still completes.
            in_flight = asyncio.create_task(http.get(served["url"] + "/api/p1", headers=headers))
            await asyncio.sleep(0.2)
            served["process"].send_signal(signal.SIGTERM)
            response = await in_flight
            assert response.status == 200
            assert json.loads(await response.read())["ssn"] == SSN
        assert await asyncio.wait_for(served["process"].wait(), 20) == 0
        lines = [
            json.loads(x) for x in served["stderr"].read_text().splitlines() if x.startswith("{")
        ]
        access = [x for x in lines if x.get("logger") == "phi_proxy.access"]
        assert any(x["status"] == 200 and x.get("decrypted") == {"ssn": 1} for x in access)
        assert all("Bearer" not in json.dumps(x) for x in lines)

    async def test_a_100kb_header_gets_a_fixed_answer_and_an_access_line(self, served):
        """The served proxy answers an oversized Authorization header itself: JSON, no echo.

        aiohttp's own 400 quoted the first 100 bytes of the header (the caller's token) and
        logged a traceback with them, with no access line.
        """
        token_start = _token(served["issuer"], "alice")[:60]
        head = f"GET /api/p1 HTTP/1.1\r\nHost: p\r\nAuthorization: Bearer {token_start}"
        reader, writer = await asyncio.open_connection(*served["url"][7:].split(":"))
        writer.write(head.encode() + b"A" * 100_000 + b"\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 20)
        writer.close()
        status_line, _, rest = data.partition(b"\r\n")
        assert b" 400 " in status_line
        body = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert body["error"] == "bad_http_request"
        assert token_start.encode() not in data
        served["process"].send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served["process"].wait(), 20) == 0
        logs = served["stderr"].read_text()
        assert token_start not in logs
        lines = [json.loads(x) for x in logs.splitlines() if x.startswith("{")]
        (access,) = [x for x in lines if x.get("logger") == "phi_proxy.access"]
        assert access["request_id"] == body["request_id"]
        assert access["outcome"] == "bad_http_request:line_too_long"
        assert access["status"] == 400

    @pytest.mark.parametrize("served", [2], indirect=True)
    async def test_two_workers_share_the_port(self, served):
        """With --workers 2 both processes answer on one port and stop on SIGTERM."""
        served["portal"].script("/ping", b'{"ok": true}')
        async with aiohttp.ClientSession() as http:
            for _ in range(20):
                async with http.get(served["url"] + "/ping") as response:
                    assert response.status == 200
        served["process"].send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served["process"].wait(), 30) == 0


class TestCheckConfig:
    async def test_check_config_prints_a_summary_and_fails_on_bad_yaml_paths(self, tmp_path):
        """check-config exits 0 with a summary; a bad value exits 2 naming its YAML path."""
        config_path, _settings, _issuer = write_env_files(tmp_path, "http://127.0.0.1:9")
        exe = str(PHI_PROXY)
        ok = await asyncio.create_subprocess_exec(
            exe,
            "check-config",
            "-c",
            str(config_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await ok.communicate()
        assert ok.returncode == 0, err.decode()
        text = out.decode()
        assert "3 practices" in text
        assert "ssn" in text
        assert "POST   /api/practices/{practice_id}/patients" in text
        broken = yaml.safe_load(config_path.read_text())
        broken["upstream"]["timeout"] = -1
        broken["fields"]["selectors"][0]["class"] = "no_such_class"
        config_path.write_text(yaml.safe_dump(broken))
        bad = await asyncio.create_subprocess_exec(
            exe,
            "check-config",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PHI_PROXY_CONFIG": str(config_path)},
        )
        _, err = await bad.communicate()
        assert bad.returncode == 2
        assert "upstream.timeout" in err.decode()
        assert "Traceback" not in err.decode()

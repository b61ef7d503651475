"""`phi-proxy serve` with scim enabled, as a real process.

The IdP's deprovisioning takes effect on the next proxied request and is audited with the SCIM
request id; a secret file others can read stops the start.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer
from blackbox_env import PLANTED, write_env_files
from blackbox_portal import RecordingPortal
from scim_helpers import ScimClient, scim_overrides
from serve_process import PHI_PROXY, free_port, wait_ready

from keys.settings import open_keyring
from tests.cli_process import start_cli

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.slow
SSN = "219-09-9999"


def _config(tmp_path: Path, upstream: str) -> tuple[Path, object, object, dict[str, int]]:
    ports = {"listen": free_port(), "admin": free_port(), "scim": free_port()}
    overrides = scim_overrides(tmp_path)
    overrides["scim"]["port"] = ports["scim"]
    overrides["listen"] = {"host": "127.0.0.1", "port": ports["listen"]}
    overrides["admin"] = {"host": "127.0.0.1", "port": ports["admin"]}
    config_path, settings, issuer = write_env_files(tmp_path, upstream, overrides=overrides)
    return config_path, settings, issuer, ports


class TestServedScim:
    async def test_deprovisioning_masks_the_next_request_and_is_audited(self, tmp_path):
        """Served proxy: group grant decrypts; PATCH active=false masks at once; audit has it."""
        portal = RecordingPortal()
        portal_server = TestServer(portal.app(), host="127.0.0.1")
        await portal_server.start_server()
        upstream = str(portal_server.make_url("")).rstrip("/")
        config_path, settings, issuer, ports = _config(tmp_path, upstream)
        PLANTED.add(SSN)
        token = open_keyring(settings.keys).encrypt("practice-a", "ssn", SSN)
        portal.script("/api/p", orjson.dumps({"practice_id": "practice-a", "ssn": token}))
        stderr_path = tmp_path / "proxy.stderr"
        with stderr_path.open("wb") as stderr:
            process = await start_cli(
                [str(PHI_PROXY), "serve", "-c", str(config_path)],
                stdout=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            await wait_ready(f"http://127.0.0.1:{ports['admin']}/readyz", process)
            auth = {"Authorization": f"Bearer {issuer.mint('00u-ann', now=_now())}"}
            async with aiohttp.ClientSession() as http:
                scim = ScimClient(http, f"http://127.0.0.1:{ports['scim']}/scim/v2")
                user = await scim.create_user("00u-ann", "ann@lakeside.example")
                await scim.create_group("Lakeside staff", [user["id"]])
                proxied = f"http://127.0.0.1:{ports['listen']}/api/p"
                async with http.get(proxied, headers=auth) as response:
                    assert orjson.loads(await response.read())["ssn"] == SSN
                async with http.patch(
                    f"{scim.base}/Users/{user['id']}",
                    data=orjson.dumps(
                        {
                            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                            "Operations": [{"op": "replace", "path": "active", "value": False}],
                        }
                    ),
                    headers={"Authorization": f"Bearer {scim.secret}"},
                ) as response:
                    assert response.status == 200
                    request_id = response.headers["X-Request-Id"]
                async with http.get(proxied, headers=auth) as response:
                    assert orjson.loads(await response.read())["ssn"] == "***-**-9999"
                async with http.get(f"http://127.0.0.1:{ports['listen']}/scim/v2/Users") as r:
                    assert (
                        r.status != 200 or b"ann@" not in await r.read()
                    )  # not on the client port
        finally:
            process.terminate()
            await process.wait()
            await portal_server.close()
        events = [
            orjson.loads(line)
            for line in (tmp_path / "audit.jsonl").read_text().splitlines()
            if b'"grant_change"' in line.encode()
        ]
        offboards = [e for e in events if e.get("action") == "offboard"]
        assert [(e["actor"], e["details"]["scim_request"]) for e in offboards] == [
            ("scim", request_id)
        ]
        assert offboards[0]["details"]["grants"][0]["practice"] == "practice-a"

    async def test_secret_file_readable_by_others_stops_the_start(self, tmp_path):
        """A SCIM secret file of mode 0644 is refused before any port is served (exit 1)."""
        config_path, _settings, _issuer, _ports = _config(tmp_path, "http://127.0.0.1:9")
        (tmp_path / "scim.secret").chmod(0o644)
        process = await start_cli(
            [str(PHI_PROXY), "serve", "-c", str(config_path)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode != 0
        assert "SCIM bearer secret is readable or writable by group or others" in err.decode()
        assert "chmod 600" in err.decode()


def _now() -> float:
    import time

    return time.time()

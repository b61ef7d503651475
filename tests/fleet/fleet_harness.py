"""Starting proxies as subprocesses, reading their JSON logs, and asking them for one record."""

import asyncio
import json
import signal
import sys
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from grants_forwarder import free_port
from grants_pg import DSN

from keys.kek import generate_kek_file
from keys.settings import keystore_file
from proxy.grants import GrantRequest
from proxy.grants.postgres_store import PostgresGrantStore
from proxy.identity import DemoIssuer, Subject
from proxy.settings import load_settings
from tests.cli_process import start_cli

ISSUER = "https://idp.fleet.invalid"
AUDIENCE = "phi-proxy-fleet-tests"
PRACTICE = "practice-a"
SSN = "123-45-6789"
MASKED = "***-**-6789"


def proxy_config(portal_url: str, dsn: str, schema: str, *, port: int, admin_port: int) -> dict:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "upstream": {"url": portal_url, "timeout": 5, "connect_timeout": 2},
        "identity": {"issuers": [ISSUER], "audience": AUDIENCE, "jwks_file": "./jwks.json"},
        "grants": {
            "store": dsn,
            "pg_schema": schema,
            "timeout_seconds": 1,
            "error_log_interval_seconds": 1,
            "listen_check_seconds": 1,
        },
        "keys": {"keystore": "./keystore.json", "kek": {"provider": "file", "path": "./kek.b64"}},
        "fields": {
            "classes": {"ssn": {"mask": {"keep_last": 4, "template": "***-**-{last}"}}},
            "selectors": [{"class": "ssn", "keys": ["ssn"]}],
            "record": {"practice_keys": ["practice_id"], "id_keys": ["patient_id"]},
        },
        "logging": {"level": "debug"},
    }


class ProxyProcess:
    """One `phi-proxy serve` subprocess; its stderr JSON lines are collected with arrival times."""

    def __init__(self, name, config_path, port, admin_port):
        self.name = name
        self.config_path = config_path
        self.url = f"http://127.0.0.1:{port}"
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.lines: list[tuple[float, dict]] = []
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    async def start(self, http: aiohttp.ClientSession) -> None:
        self.process = await start_cli(
            [sys.executable, "-m", "proxy", "serve", "-c", str(self.config_path)],
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
        )
        self._reader = asyncio.ensure_future(self._read())
        deadline = time.monotonic() + 20
        while True:
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited: {self.messages()[-5:]}")
            try:
                async with http.get(self.admin_url + "/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, f"{self.name} did not start"
            await asyncio.sleep(0.05)

    async def _read(self) -> None:
        while line := await self.process.stderr.readline():
            try:
                event = json.loads(line)
            except ValueError:
                event = {"msg": line.decode(errors="replace")}
            self.lines.append((time.monotonic(), event))

    def messages(self) -> list[str]:
        return [event.get("msg", "") for _, event in self.lines]

    async def wait_log(self, text: str, *, after: int = 0, within: float = 30.0):
        """Index and arrival time of the first line at or after `after` containing `text`."""
        deadline = time.monotonic() + within
        while True:
            for index in range(after, len(self.lines)):
                moment, event = self.lines[index]
                if text in event.get("msg", ""):
                    return index, moment
            assert time.monotonic() < deadline, f"{self.name} never logged {text!r}"
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await asyncio.wait({self._reader}, timeout=5)


class FleetEnv:
    """Everything the fleet tests share: folder, keys, issuer, portal, store, HTTP client."""

    def __init__(self, folder, schema):
        self.folder = folder
        self.schema = schema
        self.issuer = DemoIssuer(issuer=ISSUER, audience=AUDIENCE)
        self.proxies: list[ProxyProcess] = []
        self.store: PostgresGrantStore | None = None
        self.portal: TestServer | None = None
        self.http: aiohttp.ClientSession | None = None
        self.token = ""

    async def open(self) -> None:
        generate_kek_file(self.folder / "kek.b64")
        self.issuer.write_jwks(self.folder / "jwks.json")
        self.portal = TestServer(self._portal_app(), host="127.0.0.1")
        await self.portal.start_server()
        self.portal_url = str(self.portal.make_url("")).rstrip("/")
        first = self.write_config("setup", DSN)
        settings = load_settings(first)
        keystore = keystore_file(settings.keys)
        keystore.create()
        keystore.add_practices([PRACTICE])
        self.token = keystore.load().encrypt(PRACTICE, "ssn", SSN)
        self.store = PostgresGrantStore(DSN, schema=self.schema, timeout=5)
        self.http = aiohttp.ClientSession()

    def _portal_app(self) -> web.Application:
        async def patient(_request):
            return web.json_response(
                {"practice_id": PRACTICE, "patient_id": "p-1", "ssn": self.token}
            )

        app = web.Application()
        app.router.add_get("/api/patients/p-1", patient)
        return app

    def write_config(self, name: str, dsn: str, *, port: int = 0, admin_port: int = 0, audit=None):
        path = self.folder / f"{name}.yaml"
        config = proxy_config(self.portal_url, dsn, self.schema, port=port, admin_port=admin_port)
        if audit is not None:
            config["audit"] = audit
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    async def proxy(self, name: str, dsn: str = DSN, *, audit=None) -> ProxyProcess:
        """Start a replica; `audit` replaces the config's audit section (default: a file)."""
        port, admin_port = free_port(), free_port()
        path = self.write_config(name, dsn, port=port, admin_port=admin_port, audit=audit)
        process = ProxyProcess(name, path, port, admin_port)
        self.proxies.append(process)
        await process.start(self.http)
        return process

    def subject(self, sub: str) -> Subject:
        return Subject(ISSUER, sub)

    async def grant(self, sub: str):
        now = datetime.now(UTC)
        return await self.store.add(
            GrantRequest(
                subject=self.subject(sub),
                practice=PRACTICE,
                field_classes=None,
                expires_at=now + timedelta(days=1),
                created_by="fleet-tests",
                reason="fleet test",
            ),
            now=now,
        )

    async def revoke(self, grant_id: str):
        return await self.store.revoke(
            grant_id=grant_id, by="fleet-tests", reason="left", now=datetime.now(UTC)
        )

    async def ssn_seen_by(self, proxy: ProxyProcess, sub: str) -> str:
        """The SSN field `sub` receives through `proxy`: the plaintext or the mask."""
        headers = {
            "Authorization": "Bearer " + self.issuer.mint(sub, now=datetime.now(UTC).timestamp())
        }
        async with self.http.get(proxy.url + "/api/patients/p-1", headers=headers) as response:
            assert response.status == 200, await response.text()
            return (await response.json())["ssn"]

    async def readyz(self, proxy: ProxyProcess) -> int:
        async with self.http.get(proxy.admin_url + "/readyz") as response:
            return response.status

    async def close(self) -> None:
        for process in self.proxies:
            await process.stop()
        if self.store is not None:
            await self.store.close()
        if self.http is not None:
            await self.http.close()
        if self.portal is not None:
            await self.portal.close()

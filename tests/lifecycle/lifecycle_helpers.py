"""Shared pieces of the key-lifecycle tests: config files, a SQLite-backed portal, CLI runners."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from aiohttp import web

from keys.kek import generate_kek_file
from keys.settings import keystore_file
from proxy.grants import GrantRequest, SQLiteGrantStore
from proxy.identity import DemoIssuer, Subject
from proxy.settings import load_settings
from tests.cli_process import run_cli, run_cli_async, start_cli

if TYPE_CHECKING:
    import subprocess

BIN = Path(sys.executable).parent
PHI_KEYS = shutil.which("phi-keys", path=str(BIN)) or "phi-keys"
PHI_PROXY = shutil.which("phi-proxy", path=str(BIN)) or "phi-proxy"
PRACTICES = ("practice-a", "practice-b", "practice-c")
AUDIENCE = "phi-proxy-lifecycle-tests"
ISSUER = "https://idp.lifecycle.invalid"
FIELD_CLASSES = {
    "ssn": {"mask": {"keep_last": 4, "template": "***-**-{last}"}, "deterministic": True},
    "insurance_id": {"mask": {"text": "[redacted]"}},
    "history": {"mask": None},
}


def config_dict(upstream_url: str, *, port: int = 0, watch_interval: float = 0.2) -> dict:
    """A full proxy config with relative paths, PHI fields and one write route."""
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": {"url": upstream_url, "timeout": 10, "connect_timeout": 2},
        "admin": {"port": 0},
        "identity": {"issuers": [ISSUER], "audience": AUDIENCE, "jwks_file": "./jwks.json"},
        "grants": {"store": "./grants.sqlite3", "max_ttl": "90d"},
        "keys": {
            "keystore": "./keystore.json",
            "kek": {"provider": "file", "path": "./kek.b64"},
            "watch_interval": watch_interval,
            "usage_flush_every": 50,
        },
        "fields": {
            "classes": FIELD_CLASSES,
            "selectors": [
                {"class": "ssn", "keys": ["ssn"]},
                {"class": "insurance_id", "keys": ["member_id"]},
                {"class": "history", "keys": ["medical_history"]},
            ],
            "record": {"practice_keys": ["practice_id"], "id_keys": ["patient_id"]},
        },
        "write_routes": [
            {
                "method": "POST",
                "path": "/api/practices/{practice_id}/patients",
                "practice_from": {"path_param": "practice_id"},
            }
        ],
    }


def write_config(folder: Path, config: dict) -> Path:
    path = folder / "phi-proxy.yaml"
    tmp = folder / ".phi-proxy.yaml.tmp"
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)  # atomic, like an operator's editor or config management
    return path


def make_env(folder: Path, upstream_url: str, **kw) -> tuple[Path, DemoIssuer]:
    """KEK, keystore with PRACTICES, JWKS and config in `folder`."""
    generate_kek_file(folder / "kek.b64")
    issuer = DemoIssuer(issuer=ISSUER, audience=AUDIENCE)
    issuer.write_jwks(folder / "jwks.json")
    config_path = write_config(folder, config_dict(upstream_url, **kw))
    store = keystore_file(load_settings(config_path).keys)
    store.create()
    store.add_practices(PRACTICES)
    return config_path, issuer


async def grant(folder: Path, sub: str, practice: str) -> None:
    store = SQLiteGrantStore(folder / "grants.sqlite3", max_ttl=timedelta(days=90))
    now = datetime.now(UTC)
    try:
        await store.add(
            GrantRequest(
                subject=Subject(ISSUER, sub),
                practice=practice,
                field_classes=None,
                expires_at=now + timedelta(days=1),
                created_by="tests",
                reason="lifecycle test",
            ),
            now=now,
        )
    finally:
        await store.close()


def bearer(issuer: DemoIssuer, sub: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.mint(sub, now=datetime.now(UTC).timestamp())}"}


def run_keys(*args: str, config: Path, check: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run `phi-keys -c config …` as a real process."""
    env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
    done = run_cli(
        [PHI_KEYS, "-c", str(config), *args],
        text=True,
        env=env,
        check=False,
        timeout=120,
        **kw,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


async def run_keys_async(*args: str, config: Path) -> tuple[int, str, str]:
    """`run_keys` without blocking the event loop (the portal lives on it)."""
    done = await run_cli_async([PHI_KEYS, "-c", str(config), *args], text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


PATIENT_COLUMNS = ("ssn", "member_id", "history")


def create_patient_table(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS patients (id TEXT PRIMARY KEY, practice_id TEXT, "
            "ssn TEXT, member_id TEXT, history TEXT)"
        )


class SQLitePortal:
    """A legacy portal whose patients live in a SQLite table (what phi-keys migrates)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        create_patient_table(db)

    def _conn(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=30)

    async def create(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        with self._conn() as conn:
            conn.execute(
                "INSERT INTO patients VALUES (?, ?, ?, ?, ?)",
                (
                    body["patient_id"],
                    request.match_info["practice_id"],
                    body.get("ssn"),
                    body.get("member_id"),
                    body.get("medical_history"),
                ),
            )
        return web.json_response({"created": body["patient_id"]}, status=201)

    async def show(self, request: web.Request) -> web.Response:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT id, practice_id, ssn, member_id, history FROM patients WHERE id = ?",
                (request.match_info["id"],),
            ).fetchone()
        if row is None:
            return web.json_response({"error": "not found"}, status=404)
        keys = ("patient_id", "practice_id", "ssn", "member_id", "medical_history")
        return web.json_response(dict(zip(keys, row, strict=True)))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/practices/{practice_id}/patients", self.create)
        app.router.add_get("/api/patients/{id}", self.show)
        return app


class ProxyProcess:
    """`phi-proxy serve` as a child process, with its JSON log lines collected."""

    def __init__(self) -> None:
        self.lines: list[dict] = []
        self.changed = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task | None = None

    async def start(self, config, *, prefix: tuple[str, ...] = ()) -> None:
        """Start it (after `prefix`, e.g. a read-only mount wrapper) and wait until it listens."""
        self.process = await start_cli(
            [*prefix, PHI_PROXY, "serve", "-c", str(config)],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_for("listening", 1)

    async def _read(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(raw))
                self.changed.set()

    def count(self, msg: str) -> int:
        return sum(1 for line in self.lines if line.get("msg", "").startswith(msg))

    async def wait_for(self, msg: str, at_least: int, within: float = 20) -> None:
        async def wait() -> None:
            while self.count(msg) < at_least:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), within)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader

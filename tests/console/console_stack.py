"""The whole console stack, for the tests and `make console-screenshots` alike.

A scripted portal (tests/blackbox), the test OIDC provider (console_idp), and `phi-proxy serve`
as a real process with its client port, admin port and admin API listener with the console;
grants in the proxy's real SQLite store. Free ports and the given folder only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

_HERE = Path(__file__).resolve().parent
for _path in (_HERE, _HERE.parent / "blackbox", _HERE.parent / "cli"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import aiohttp  # noqa: E402
from aiohttp.test_utils import TestServer  # noqa: E402
from blackbox_env import AUDIENCE, PLANTED, write_env_files  # noqa: E402
from blackbox_portal import RecordingPortal  # noqa: E402
from cli_helpers import PHI_PROXY, free_ports  # noqa: E402
from console_idp import CLIENT_ID, LocalIdp, User  # noqa: E402
from serve_process import wait_ready  # noqa: E402

from keys.settings import keystore_file  # noqa: E402
from proxy.grants import GrantRequest, open_grant_store  # noqa: E402
from proxy.identity import Subject  # noqa: E402
from tests.cli_process import start_cli  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from keys.keyring import Keyring
    from proxy.grants import Grant
    from proxy.settings import Settings

ROLE = "phi-admin"
ADMIN = User("officer-olivia", [ROLE])
NOT_ADMIN = User("clerk-carl", ["staff"])

#: Where chromium is looked for (Debian's package); PHI_TEST_CHROMIUM overrides.
CHROMIUM = os.environ.get("PHI_TEST_CHROMIUM", "/usr/bin/chromium")
REQUIRE_CHROMIUM = "PHI_TEST_REQUIRE_CHROMIUM"


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here (None: they can)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(
        CHROMIUM
    ):
        return f"chromium is not installed at {CHROMIUM} (Debian's chromium; scripts/test-chromium)"
    return None


@dataclass
class ConsoleStack:
    """Handles on the running stack."""

    folder: Path
    config_path: Path
    settings: Settings
    issuer: Any  # DemoIssuer
    keyring: Keyring
    portal: RecordingPortal
    idp: LocalIdp
    proxy_url: str  # the client port
    admin_url: str  # /readyz, /metrics
    console_url: str  # the admin API listener: /console/, /api/v1
    process: asyncio.subprocess.Process
    stderr: Path

    def subject(self, sub: str) -> Subject:
        return Subject(self.issuer.issuer, sub)

    def token(self, sub: str, **claims: Any) -> str:
        return self.issuer.mint(sub, now=datetime.now(UTC).timestamp(), **claims)

    def encrypt(self, practice: str, field_class: str, value: str) -> str:
        PLANTED.add(value)
        return self.keyring.encrypt(practice, field_class, value)

    async def grant(
        self,
        sub: str,
        practice: str,
        *,
        fields: frozenset[str] | None = None,
        days: float = 30,
        created_days_ago: float = 0,
        by: str = "tests",
        reason: str = "console test",
    ) -> Grant:
        """Add a grant straight into the proxy's store (as `phi-grants add` would)."""
        store = open_grant_store(self.settings.grants)
        now = datetime.now(UTC)
        created = now - timedelta(days=created_days_ago)
        try:
            return await store.add(
                GrantRequest(
                    subject=self.subject(sub),
                    practice=practice,
                    field_classes=fields,
                    expires_at=created + timedelta(days=days),
                    created_by=by,
                    reason=reason,
                ),
                now=created,
            )
        finally:
            await store.close()

    async def break_glass(
        self, sub: str, practice: str, *, reason: str, days_ago: float = 0, hours: float = 1
    ) -> Grant:
        """Open a break-glass use straight in the store, `days_ago` (as the proxy would)."""
        store = open_grant_store(self.settings.grants)
        opened_at = datetime.now(UTC) - timedelta(days=days_ago)
        try:
            opened = await store.open_break_glass(
                GrantRequest(
                    subject=self.subject(sub),
                    practice=practice,
                    field_classes=None,
                    expires_at=opened_at + timedelta(hours=hours),
                    created_by="break-glass",
                    reason=reason,
                ),
                now=opened_at,
                max_per_day=10,
            )
        finally:
            await store.close()
        return opened.grant

    async def proxied(self, path: str, sub: str) -> tuple[int, bytes]:
        """GET `path` through the proxy's client port as `sub`: status and body bytes."""
        headers = {"Authorization": f"Bearer {self.token(sub)}"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.proxy_url + path, headers=headers) as response,
        ):
            return response.status, await response.read()


def assert_no_planted_phi_in_stderr(stack: ConsoleStack) -> None:
    """No PHI value a test planted appears in the served proxy's log lines."""
    log = stack.stderr.read_text()
    assert "console request" in log
    for value in PLANTED:
        assert value not in log, "a planted PHI value reached the proxy's log"


def console_overrides(api_port: int, idp_base: str, *, session_minutes: int = 60) -> dict:
    """The admin_api section with the console, logging in at the test IdP."""
    return {
        "enabled": True,
        "host": "127.0.0.1",
        "port": api_port,
        "role_claim": "roles",
        "role": ROLE,
        "console": {
            "enabled": True,
            "session_minutes": session_minutes,
            "oidc": {
                "authorization_endpoint": f"{idp_base}/authorize",
                "token_endpoint": f"{idp_base}/token",
                "client_id": CLIENT_ID,
                "redirect_uri": f"http://127.0.0.1:{api_port}/console/callback",
                "scopes": ["openid", "profile"],
            },
        },
    }


@contextlib.asynccontextmanager
async def running_console(
    folder: Path, *, workers: int = 1, overrides: dict | None = None
) -> AsyncIterator[ConsoleStack]:
    """Start portal, IdP and `phi-proxy serve` (with the console) in `folder`; stop them after.

    `overrides`: more top-level config sections (e.g. `break_glass`), merged over these.
    """
    portal = RecordingPortal()
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    port, admin_port, api_port = free_ports(3)
    idp = LocalIdp(
        issuer=None,
        audience=AUDIENCE,
        redirect_uri=f"http://127.0.0.1:{api_port}/console/callback",
        user=ADMIN,
    )
    await idp.start()
    process = None
    try:
        config_path, settings, issuer = write_env_files(
            folder,
            str(portal_server.make_url("")).rstrip("/"),
            overrides={
                "listen": {"host": "127.0.0.1", "port": port},
                "admin": {"host": "127.0.0.1", "port": admin_port},
                "admin_api": console_overrides(api_port, idp.base),
                "audit": {"flush_interval": 20},
                **(overrides or {}),
            },
        )
        idp.issuer = issuer
        stderr = folder / "proxy.stderr"
        with stderr.open("wb") as sink:
            process = await start_cli(
                [str(PHI_PROXY), "serve", "-c", str(config_path), "--workers", str(workers)],
                stdout=asyncio.subprocess.DEVNULL,
                stderr=sink,
            )
        await wait_ready(f"http://127.0.0.1:{admin_port}/readyz", process)
        await wait_ready(f"http://127.0.0.1:{api_port}/openapi.json", process)
        yield ConsoleStack(
            folder=folder,
            config_path=config_path,
            settings=settings,
            issuer=issuer,
            keyring=keystore_file(settings.keys).load(),
            portal=portal,
            idp=idp,
            proxy_url=f"http://127.0.0.1:{port}",
            admin_url=f"http://127.0.0.1:{admin_port}",
            console_url=f"http://127.0.0.1:{api_port}",
            process=process,
            stderr=stderr,
        )
    finally:
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()
        await idp.close()
        await portal_server.close()

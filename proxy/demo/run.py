"""Running the demo: portal, proxy and admin listener on one event loop, until Ctrl-C.

Everything lives in one private temporary folder that is removed when the demo stops (SIGINT
or SIGTERM), unless `--keep` is given. Ports are checked before anything is created, so a port
that is taken costs the user one clear line and nothing to clean up.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
import signal
import socket
import sys
import tempfile
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from aiohttp import web

from proxy.admin import build_admin_app
from proxy.app import build_app, build_runner
from proxy.demo.data import STAFF
from proxy.demo.portal import build_portal_app
from proxy.demo.seed import create_grants, seed_through_proxy
from proxy.demo.story import render_story
from proxy.demo.workspace import DemoPorts, Workspace, create_workspace
from proxy.grants import open_grant_store
from proxy.logs import configure_logging
from proxy.runtime import Runtime

__all__ = ["HOST", "TOKEN_HOURS", "DemoOptions", "PortInUse", "run_demo"]

HOST = "127.0.0.1"
TOKEN_HOURS = 4


class PortInUse(Exception):
    """A demo listener cannot bind its port; the message names the port and the flag."""


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """What `phi-proxy demo` was asked for."""

    ports: DemoPorts = field(default_factory=DemoPorts)
    keep: bool = False


def _listeners(ports: DemoPorts) -> tuple[tuple[str, int, str], ...]:
    """(what, port, flag) of each listener, in start order: the portal first."""
    return (
        ("the demo portal", ports.portal, "--portal-port"),
        ("phi-proxy", ports.proxy, "--port"),
        ("the admin listener", ports.admin, "--admin-port"),
    )


def check_ports(ports: DemoPorts) -> None:
    """Raise PortInUse unless every port is distinct and free on 127.0.0.1 right now."""
    seen: dict[int, str] = {}
    for _what, port, flag in _listeners(ports):
        if port in seen:
            raise PortInUse(f"{seen[port]} and {flag} are both {port}; give each its own port")
        seen[port] = flag
    for what, port, flag in _listeners(ports):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                raise PortInUse(_taken(what, port, flag, exc)) from None


def _taken(what: str, port: int, flag: str, exc: OSError) -> str:
    reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"failed ({exc.strerror})"
    return f"port {port} for {what} {reason}; choose another with {flag} PORT"


async def _start(runner: web.AppRunner, what: str, port: int, flag: str) -> None:
    await runner.setup()
    try:
        await web.TCPSite(runner, HOST, port).start()
    except OSError as exc:
        raise PortInUse(_taken(what, port, flag, exc)) from None


async def _serve(workspace: Workspace, ports: DemoPorts, out: TextIO) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runtime = Runtime(workspace.settings)
    portal, proxy, admin = _listeners(ports)
    runners = (
        (web.AppRunner(build_portal_app(workspace.portal_db), access_log=None), portal),
        (build_runner(build_app(runtime), handle_signals=False, access_log=None), proxy),
        (web.AppRunner(build_admin_app(runtime), handle_signals=False, access_log=None), admin),
    )
    started: list[web.AppRunner] = []
    try:
        for runner, (what, port, flag) in runners:
            started.append(runner)
            await _start(runner, what, port, flag)
        store = open_grant_store(workspace.settings.grants)
        try:
            grants = await create_grants(store)
        finally:
            await store.close()
        now = time.time()
        tokens = {
            person.sub: workspace.issuer.mint(person.sub, now=now, ttl=TOKEN_HOURS * 3600)
            for person in STAFF
        }
        registrars = {"practice-a": tokens["alice"], "practice-b": tokens["bob"]}
        seeded = await seed_through_proxy(f"http://{HOST}:{ports.proxy}", registrars)
        story = render_story(
            workspace=workspace,
            ports=ports,
            tokens=tokens,
            token_hours=TOKEN_HOURS,
            grants_expire=grants.expires_at,
            seeded=seeded,
        )
        print(story, file=out, flush=True)
        await stop.wait()
    finally:
        for runner in reversed(started):
            await runner.cleanup()


def run_demo(options: DemoOptions, *, out: TextIO = sys.stdout) -> int:
    """Set up, serve until SIGINT/SIGTERM, tear down. Raises PortInUse before creating anything."""
    check_ports(options.ports)
    folder = Path(tempfile.mkdtemp(prefix="phi-proxy-demo-"))  # mode 0700
    try:
        workspace = create_workspace(folder, options.ports)
        configure_logging(workspace.settings.logging.level)
        with suppress(KeyboardInterrupt):  # Ctrl-C during start-up: still clean up below
            asyncio.run(_serve(workspace, options.ports, out))
    finally:
        if options.keep:
            print(f"\nStopped. Kept {folder} (--keep); delete it when done.", file=out, flush=True)
        else:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"\nStopped. Deleted {folder}.", file=out, flush=True)
    return 0

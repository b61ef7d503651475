"""`phi-proxy serve` as a real process: nobody can join its port, and start failures are one line.

With `--workers N` the supervisor binds the client and admin ports once, without SO_REUSEPORT,
and hands the sockets to its workers; another process of the same user that binds the port with
SO_REUSEPORT (to receive a share of the clients' connections) now gets EADDRINUSE. A port held
by someone else, a missing TLS file or a loose TLS key ends `serve` with one `error:` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import signal
import socket
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from cli_helpers import PHI_PROXY, free_ports

from proxy.demo.workspace import DemoPorts, create_workspace
from proxy.serve import _bind
from tests.cli_process import start_cli

pytestmark = pytest.mark.slow


def portal_app() -> web.Application:
    async def ping(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/ping", ping)
    return app


def workspace(tmp_path: Path, portal_port: int, **overrides: object) -> tuple[Path, DemoPorts]:
    proxy_port, admin_port = free_ports(2)
    ports = DemoPorts(proxy=proxy_port, portal=portal_port, admin=admin_port)
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    config = create_workspace(folder, ports).config_path
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["logging"] = {"level": "info"}
    for section, values in overrides.items():
        data[section] = {**data.get(section, {}), **values}  # type: ignore[dict-item]
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config, ports


def rogue_bind(port: int) -> OSError | None:
    """Bind 127.0.0.1:port with SO_REUSEPORT, as a same-UID process joining the port would."""
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()
    except OSError as exc:
        return exc
    finally:
        sock.close()
    return None


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def listening_lines(stderr: Path) -> int:
    return sum(
        json.loads(line).get("msg") == "listening"
        for line in read(stderr).splitlines()
        if line.startswith("{")
    )


def worker_pids(process, workers: int) -> list[int]:
    """The processes serving: the `serve` process itself, or its spawned workers."""
    if workers == 1:
        return [process.pid]
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    pids = [
        pid
        for pid in map(int, children.split())
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(pids) == workers, pids
    return pids


async def started(process, stderr: Path, admin_port: int, *, workers: int) -> list[int]:
    """Wait until every worker logged `listening` and /healthz answers; their pids."""
    deadline = asyncio.get_running_loop().time() + 30
    async with aiohttp.ClientSession() as http:
        while True:
            assert process.returncode is None, read(stderr)
            assert asyncio.get_running_loop().time() < deadline, "phi-proxy did not start"
            if listening_lines(stderr) == workers:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{admin_port}/healthz") as response:
                        if response.status == 200:
                            return worker_pids(process, workers)
            await asyncio.sleep(0.1)


async def ping(port: int) -> int:
    """One request on a fresh connection (so whichever worker is running accepts it)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as http,
        http.get(f"http://127.0.0.1:{port}/ping") as response,
    ):
        assert (await response.json()) == {"ok": True}
        return response.status


@pytest.fixture
async def portal():
    server = TestServer(portal_app(), host="127.0.0.1")
    await server.start_server()
    yield server.port
    await server.close()


async def run_serve(config: Path, stderr: Path, *extra: str):
    with stderr.open("wb") as sink:
        return await start_cli(
            [str(PHI_PROXY), "serve", "-c", str(config), *extra],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )


async def stop(process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), 30)


class TestNoOneJoinsThePort:
    @pytest.mark.parametrize("workers", [1, 2])
    async def test_a_reuseport_listener_cannot_join_and_every_worker_serves(
        self, tmp_path, portal, workers
    ):
        """F2: SO_REUSEPORT binds fail on both ports; each worker alone still serves clients."""
        config, ports = workspace(tmp_path, portal)
        stderr = tmp_path / "serve.stderr"
        extra = ("--workers", str(workers)) if workers > 1 else ()
        process = await run_serve(config, stderr, *extra)
        try:
            pids = await started(process, stderr, ports.admin, workers=workers)
            for port in (ports.proxy, ports.admin):
                refused = rogue_bind(port)
                assert refused is not None, f"another process could join port {port}"
                assert refused.errno == errno.EADDRINUSE
            for serving in pids:
                others = [pid for pid in pids if pid != serving]
                for pid in others:  # only `serving` can accept the next connection
                    os.kill(pid, signal.SIGSTOP)
                try:
                    assert [await ping(ports.proxy) for _ in range(3)] == [200, 200, 200]
                finally:
                    for pid in others:
                        os.kill(pid, signal.SIGCONT)
        finally:
            status = await stop(process)
        assert status == 0, read(stderr)


class TestStartupWarnings:
    async def test_an_empty_field_policy_is_logged_at_start(self, tmp_path, portal):
        """F11: what check-config warns about is also a warning line in the proxy's log."""
        config, ports = workspace(tmp_path, portal)
        data = yaml.safe_load(config.read_text(encoding="utf-8"))
        data["fields"] = {}
        config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        stderr = tmp_path / "serve.stderr"
        process = await run_serve(config, stderr)
        try:
            await started(process, stderr, ports.admin, workers=1)
        finally:
            assert await stop(process) == 0
        warnings = [
            event["msg"]
            for event in map(json.loads, filter(None, read(stderr).splitlines()))
            if event["level"] == "warning"
        ]
        assert any(w.startswith("config: fields.selectors is empty") for w in warnings)
        assert any(w.startswith("config: write_routes lists 3 route(s)") for w in warnings)


def error_lines(text: str) -> list[str]:
    assert "Traceback" not in text, text
    return [line for line in text.splitlines() if line.startswith("error:")]


class TestStartFailuresAreOneLine:
    @pytest.mark.parametrize("workers", [1, 2])
    async def test_port_in_use(self, tmp_path, portal, workers):
        """F11: a port someone else holds is one error line naming it, exit 1, no traceback."""
        config, ports = workspace(tmp_path, portal)
        holder = socket.socket()
        holder.bind(("127.0.0.1", ports.proxy))
        holder.listen()
        try:
            stderr = tmp_path / "serve.stderr"
            process = await run_serve(config, stderr, "--workers", str(workers))
            status = await asyncio.wait_for(process.wait(), 60)
        finally:
            holder.close()
        (line,) = error_lines(read(stderr))
        assert status == 1
        assert f"cannot listen on 127.0.0.1:{ports.proxy} (listen.port)" in line
        assert "already in use" in line

    async def test_missing_listener_certificate(self, tmp_path, portal):
        """F11: listen.tls naming files that do not exist: one error line, exit 1."""
        tls = {"tls": {"cert_file": "./tls/proxy.crt", "key_file": "./tls/proxy.key"}}
        config, _ports = workspace(tmp_path, portal, listen=tls)
        stderr = tmp_path / "serve.stderr"
        process = await run_serve(config, stderr)
        status = await asyncio.wait_for(process.wait(), 60)
        (line,) = error_lines(read(stderr))
        assert status == 1
        assert "listen.tls.cert_file" in line
        assert "file not found" in line

    async def test_world_readable_listener_key(self, tmp_path, portal):
        """Item 7: a listener key readable by others stops serve with one error line."""
        folder = tmp_path / "tls"
        folder.mkdir()
        key = folder / "proxy.key"
        key.write_text("not even a key\n", encoding="utf-8")
        key.chmod(0o644)
        cert = folder / "proxy.crt"
        cert.write_text("not a certificate\n", encoding="utf-8")
        tls = {"tls": {"cert_file": str(cert), "key_file": str(key)}}
        config, _ports = workspace(tmp_path, portal, listen=tls)
        stderr = tmp_path / "serve.stderr"
        process = await run_serve(config, stderr)
        status = await asyncio.wait_for(process.wait(), 60)
        (line,) = error_lines(read(stderr))
        assert status == 1
        assert "listener TLS private key is readable or writable by group or others" in line
        assert f"chmod 600 {key}" in line


class TestAddressFamilies:
    """`localhost` on a kernel without IPv6 still listens on 127.0.0.1.

    A kernel booted with ipv6.disable=1 is not available here, so socket creation for AF_INET6
    is made to fail the way that kernel fails it; the binding itself is real.
    """

    def test_an_unusable_family_is_skipped(self, monkeypatch):
        real_getaddrinfo, real_socket = socket.getaddrinfo, socket.socket

        def both_families(host, port, *args, **kwargs):
            v4 = real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
            return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::1", port, 0, 0)), *v4]

        def no_ipv6(family=-1, *args, **kwargs):
            if family == socket.AF_INET6:
                raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
            return real_socket(family, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", both_families)
        monkeypatch.setattr(socket, "socket", no_ipv6)
        bound = _bind("localhost", 0, "listen.port")
        try:
            assert [s.getsockname()[0] for s in bound] == ["127.0.0.1"]
        finally:
            for sock in bound:
                sock.close()

    def test_every_address_of_an_ephemeral_listener_shares_one_port(self):
        bound = _bind("localhost", 0, "listen.port")
        try:
            assert len({s.getsockname()[1] for s in bound}) == 1
        finally:
            for sock in bound:
                sock.close()


def current_workers(process) -> set[int]:
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    return {
        pid
        for pid in map(int, children.split())
        if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


async def replaced(process, gone: int, count: int, stderr: Path) -> set[int]:
    """Wait (up to 30 s) until `count` workers run and `gone` is not one of them."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        assert process.returncode is None, read(stderr)
        workers = current_workers(process)
        if gone not in workers and len(workers) == count:
            return workers
        assert asyncio.get_running_loop().time() < deadline, read(stderr)
        await asyncio.sleep(0.1)


class TestDeadWorkers:
    """A worker that dies is replaced; workers that keep dying stop the proxy (exit 1)."""

    async def test_a_killed_worker_is_replaced_and_the_port_keeps_serving(self, tmp_path, portal):
        config, ports = workspace(tmp_path, portal)
        stderr = tmp_path / "serve.stderr"
        process = await run_serve(config, stderr, "--workers", "2")
        try:
            first = await started(process, stderr, ports.admin, workers=2)
            os.kill(first[0], signal.SIGKILL)
            workers = await replaced(process, first[0], 2, stderr)
            assert first[1] in workers
            new = (workers - {first[1]}).pop()
            os.kill(first[1], signal.SIGSTOP)  # only the replacement can accept now
            try:
                deadline = asyncio.get_running_loop().time() + 30
                while True:  # the replacement may still be importing
                    with contextlib.suppress(aiohttp.ClientError):
                        assert await ping(ports.proxy) == 200
                        break
                    assert asyncio.get_running_loop().time() < deadline, read(stderr)
                    await asyncio.sleep(0.2)
            finally:
                os.kill(first[1], signal.SIGCONT)
            assert "starting a replacement" in read(stderr)
            assert new != first[0]
        finally:
            status = await stop(process)
        assert status == 0, read(stderr)

    async def test_workers_that_keep_dying_stop_the_proxy(self, tmp_path, portal):
        config, ports = workspace(tmp_path, portal)
        stderr = tmp_path / "serve.stderr"
        process = await run_serve(config, stderr, "--workers", "2")
        try:
            await started(process, stderr, ports.admin, workers=2)
            deadline = asyncio.get_running_loop().time() + 60
            while process.returncode is None:
                assert asyncio.get_running_loop().time() < deadline, read(stderr)
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    for pid in current_workers(process):
                        os.kill(pid, signal.SIGKILL)
                await asyncio.sleep(0.2)
            status = await process.wait()
        finally:
            await stop(process)
        assert status == 1
        assert "workers keep exiting" in read(stderr)


def ended(pid: int) -> bool:
    """True once `pid` has exited (gone, or a zombie its new parent has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


class TestADeadSupervisor:
    async def test_its_workers_stop_instead_of_serving_on_as_orphans(self, tmp_path, portal):
        """SIGKILL on the supervisor: both workers stop, and the port stops answering.

        An orphaned worker would keep serving with the config it started with, beyond the
        reach of SIGHUP and SIGTERM, and hold the port against a restarted proxy.
        """
        config, ports = workspace(tmp_path, portal)
        stderr = tmp_path / "serve.stderr"
        process = await run_serve(config, stderr, "--workers", "2")
        try:
            workers = await started(process, stderr, ports.admin, workers=2)
        finally:
            process.kill()
            await process.wait()
        deadline = asyncio.get_running_loop().time() + 30
        while not all(map(ended, workers)):
            assert asyncio.get_running_loop().time() < deadline, read(stderr)
            await asyncio.sleep(0.1)
        with pytest.raises(aiohttp.ClientConnectionError):
            await ping(ports.proxy)
        assert read(stderr).count("the supervisor process is gone") == 2

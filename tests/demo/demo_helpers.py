"""Helpers for the demo tests: free ports, a real `phi-proxy demo` process, its printed story."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from proxy.demo.story import READY_LINE

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TOKEN_RE = re.compile(r"phi1\.[A-Za-z0-9_.~-]+")


def free_ports(count: int) -> list[int]:
    """Distinct ports that were free a moment ago (bound together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class DemoProcess:
    """A running `phi-proxy demo` subprocess and what it printed."""

    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def exports(self) -> dict[str, str]:
        """The `export NAME=value` lines of the story, as a mapping."""
        found = {}
        for line in self.lines:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                found[name] = value
        return found

    def steps(self) -> list[tuple[str, str]]:
        """(comment, command) pairs: each `# …` line and the command line after it."""
        pairs = []
        for before, line in zip(self.lines, self.lines[1:], strict=False):
            if before.startswith("# ") and line and not line.startswith("#"):
                pairs.append((before[2:], line))
        return pairs

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (Ctrl-C) and wait; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        status = self.process.wait(timeout=timeout)
        if self.reader is not None:
            self.reader.join(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return status


def start_demo(ports: list[int], *extra: str, timeout: float = 30.0) -> DemoProcess:
    """Start `phi-proxy demo` on `ports` (proxy, portal, admin) and wait for its ready line."""
    proxy, portal, admin = ports
    argv = [str(BIN / "phi-proxy"), "demo", "--port", str(proxy), "--portal-port", str(portal)]
    argv += ["--admin-port", str(admin), *extra]
    process = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    demo = DemoProcess(process)

    def read() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip("\n")
            demo.lines.append(line)
            if line == READY_LINE:
                demo.ready.set()

    demo.reader = threading.Thread(target=read, daemon=True)
    demo.reader.start()
    deadline = time.monotonic() + timeout
    while not demo.ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            demo.stop()
            raise AssertionError("the demo did not become ready:\n" + demo.text)
    return demo


@dataclass(frozen=True)
class CurlCall:
    """What one printed curl command asks for."""

    method: str
    url: str
    headers: dict[str, str]
    data: str | None
    pretty: bool


def parse_curl(command: str, env: dict[str, str]) -> CurlCall:
    """Read a printed `curl …[| python3 -m json.tool]` command the way the shell would."""
    curl, _, pipe = command.partition(" | ")
    words = shlex.split(curl)
    assert words[:2] == ["curl", "-s"], command
    headers: dict[str, str] = {}
    data = None
    url = None
    items = iter(words[2:])
    for word in items:
        if word == "-H":
            name, _, value = next(items).partition(":")
            headers[name.strip()] = _expand(value.strip(), env)
        elif word == "-d":
            data = next(items)
        else:
            url = _expand(word, env)
    assert url is not None, command
    return CurlCall("POST" if data else "GET", url, headers, data, pipe == "python3 -m json.tool")


def fetch(call: CurlCall) -> tuple[int, str]:
    """Send what a printed curl command sends; (status, body text)."""
    request = urllib.request.Request(  # noqa: S310 - http://127.0.0.1 URLs the demo printed
        call.url,
        data=None if call.data is None else call.data.encode(),
        headers=call.headers,
        method=call.method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _expand(text: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?([A-Z_]+)\}?", lambda m: env[m.group(1)], text)

"""A portal that answers scripted raw bytes, behind a real proxy, and a client that reads raw bytes.

aiohttp's own server never sends two Content-Type lines, a token as the reason phrase or a
Connection header naming Content-Encoding; a real portal (or its middleware) might. The portal
here writes whatever bytes a test scripts and records the bytes of each request it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from blackbox_env import ProxyEnv, proxy_env_for
from blackbox_portal import RecordingPortal
from yarl import URL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class RawRequest:
    head: str
    body: bytes


@dataclass
class RawPortal:
    """Answers each path with scripted bytes; records every request's head and body."""

    routes: dict[str, bytes] = field(default_factory=dict)
    received: list[RawRequest] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            body = await reader.readexactly(content_length(head))
            self.received.append(RawRequest(head, body))
            target = head.split(" ", 2)[1]
            writer.write(self.routes.get(target.split("?", 1)[0], _NOT_FOUND))
            await writer.drain()
        finally:
            writer.close()


def content_length(head: str) -> int:
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            return int(value)
    return 0


def raw_response(status_line: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    """An HTTP/1.1 answer with exactly these header lines, framed by Content-Length."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = f"HTTP/1.1 {status_line}\r\n{lines}Content-Length: {len(body)}\r\nConnection: close\r\n"
    return head.encode("latin-1") + b"\r\n" + body


@dataclass
class RawAnswer:
    """What the client got, byte for byte: status line, header lines, body."""

    status_line: str
    header_lines: list[str]
    body: bytes

    @property
    def status(self) -> int:
        return int(self.status_line.split(" ", 2)[1])

    def values(self, name: str) -> list[str]:
        wanted = name.lower()
        return [
            line.partition(":")[2].strip()
            for line in self.header_lines
            if line.partition(":")[0].strip().lower() == wanted
        ]

    @property
    def head(self) -> str:
        return "\r\n".join([self.status_line, *self.header_lines])


async def raw_exchange(
    proxy_url: str,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> RawAnswer:
    """Send one request over a plain socket and return the raw answer (nothing decoded)."""
    url = URL(proxy_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    if body:
        pairs.append(("Content-Length", str(len(body))))
    lines = "".join(f"{name}: {value}\r\n" for name, value in pairs)
    request = f"{method} {path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n{lines}\r\n"
    writer.write(request.encode("latin-1") + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = RawAnswer(status_line, header_lines, payload)
    if "chunked" in ",".join(answer.values("Transfer-Encoding")).lower():
        answer.body = _dechunk(payload)
    return answer


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2 :]


@contextlib.asynccontextmanager
async def raw_portal_env(
    folder: Path, *, overrides: dict | None = None
) -> AsyncIterator[tuple[ProxyEnv, RawPortal]]:
    """A real proxy (config, keys, JWTs, grants as in blackbox_env) in front of a RawPortal."""
    portal = RawPortal()
    server = await asyncio.start_server(portal.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstream = f"http://127.0.0.1:{port}"
    try:  # RecordingPortal below is unused: requests go to the raw portal
        async with proxy_env_for(
            folder, upstream, portal=RecordingPortal(), overrides=overrides
        ) as env:
            yield env, portal
    finally:
        server.close()
        await server.wait_closed()

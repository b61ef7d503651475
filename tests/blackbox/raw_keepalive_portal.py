"""A raw keep-alive portal that records every byte, and a raw client that reads until EOF.

The portal parses requests framed by
Content-Length on keep-alive connections and answers each with scripted bytes, optionally
closing the connection afterwards (a portal that dies mid-body). The client writes raw bytes
(pipelined requests included) and reads until the proxy closes the connection, so tests assert
on everything the client got without waiting for a fixed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blackbox_env import ProxyEnv, proxy_env_for
from blackbox_portal import RecordingPortal
from raw_portal import RawAnswer, content_length
from yarl import URL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

#: Only a guard against a hung test; no assertion depends on how long anything takes.
HANG_GUARD_SECONDS = 60


@dataclass
class PortalRequest:
    """One request as the portal read it off the wire."""

    conn: int
    head: str
    body: bytes

    @property
    def request_line(self) -> str:
        return self.head.split("\r\n", 1)[0]

    @property
    def target(self) -> str:
        return self.request_line.split(" ", 2)[1]

    def header_names(self) -> list[str]:
        return [line.partition(":")[0].strip().lower() for line in self.head.split("\r\n")[1:]]


@dataclass
class Reply:
    """What the portal writes for one request; `close` ends the connection after it."""

    chunks: list[bytes]
    close: bool = False


def response(
    status: str, headers: list[tuple[str, str]], body: bytes, *, length: bool = True
) -> bytes:
    """An HTTP/1.1 answer with exactly these header lines (and Content-Length unless told)."""
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    if length:
        lines += f"Content-Length: {len(body)}\r\n"
    return f"HTTP/1.1 {status}\r\n{lines}\r\n".encode("latin-1") + body


def _not_found(_request: PortalRequest) -> Reply:
    return Reply([response("404 Not Found", [], b"")])


@dataclass
class KeepAlivePortal:
    """Answers requests on keep-alive connections with scripted replies; records every byte."""

    answer: Callable[[PortalRequest], Reply] = _not_found
    requests: list[PortalRequest] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = self.connections
        self.connections += 1
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                body = await reader.readexactly(content_length(head))
                request = PortalRequest(conn, head, body)
                self.requests.append(request)
                reply = self.answer(request)
                for chunk in reply.chunks:
                    writer.write(chunk)
                    await writer.drain()
                if reply.close:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def portal_env(
    folder: Path, portal: KeepAlivePortal, *, overrides: dict[str, Any] | None = None
) -> AsyncIterator[ProxyEnv]:
    """A real proxy (keys, JWKS, grants, audit trail) in front of `portal`."""
    server = await asyncio.start_server(portal.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    config = dict(overrides or {})
    config["upstream"] = {
        "url": url,
        "timeout": 5,
        "connect_timeout": 2,
        **config.get("upstream", {}),
    }
    try:
        async with proxy_env_for(folder, url, portal=RecordingPortal(), overrides=config) as env:
            yield env
    finally:
        server.close()
        await server.wait_closed()


async def exchange(proxy_url: str, data: bytes) -> bytes:
    """Write raw bytes to the proxy and return everything it sends until it closes."""
    url = URL(proxy_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(HANG_GUARD_SECONDS):
            return await reader.read()
    finally:
        writer.close()


def request_bytes(
    method: str, target: str, headers: list[tuple[str, str]] | None = None, body: bytes = b""
) -> bytes:
    """One raw HTTP/1.1 request; Content-Length added when there is a body."""
    lines = [("Host", "proxy.test"), *(headers or [])]
    if body:
        lines.append(("Content-Length", str(len(body))))
    text = "".join(f"{name}: {value}\r\n" for name, value in lines)
    return f"{method} {target} HTTP/1.1\r\n{text}\r\n".encode("latin-1") + body


class Answer(RawAnswer):
    """The first response in raw client bytes; `body` is everything after its head."""

    @property
    def rest(self) -> bytes:
        return self.body

    def json(self) -> Any:
        """The body of a Content-Length framed proxy error answer, parsed."""
        length = int(self.values("Content-Length")[0])
        return json.loads(self.body[:length])


def first_answer(data: bytes, *, skip_interim: bool = True) -> Answer:
    """Split the first (final, unless told otherwise) response head off `data`."""
    while True:
        head, _, rest = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer = Answer(status_line, header_lines, rest)
        if not (skip_interim and 100 <= answer.status < 200):
            return answer
        data = rest


def audit_requests(folder: Path) -> list[dict[str, Any]]:
    """The request events of the file audit trail in `folder` (read after the proxy stopped)."""
    path = folder / "audit.jsonl"
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [event for event in events if event.get("type") == "request"]

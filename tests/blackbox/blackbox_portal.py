"""A scriptable stand-in for the legacy portal: tests set what it answers and read what it got."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Scripted:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Received:
    method: str
    path_qs: str
    headers: dict[str, list[str]]
    body: bytes


class RecordingPortal:
    """An aiohttp app whose answers are scripted per path and whose requests are recorded."""

    def __init__(self) -> None:
        self.routes: dict[str, Scripted] = {}
        self.received: list[Received] = []

    def script(self, path: str, body: bytes | str = b"", *, status: int = 200, **kw) -> None:
        data = body.encode() if isinstance(body, str) else body
        headers = kw.pop("headers", {})
        headers.setdefault("Content-Type", kw.pop("content_type", "application/json"))
        self.routes[path] = Scripted(status=status, body=data, headers=headers, **kw)

    def last(self) -> Received:
        return self.received[-1]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers.items():
            headers.setdefault(name.lower(), []).append(value)
        self.received.append(
            Received(request.method, request.path_qs, headers, await request.read())
        )
        scripted = self.routes.get(request.path)
        if scripted is None:
            return web.json_response({"echo": request.path_qs})
        if scripted.delay:
            await asyncio.sleep(scripted.delay)
        return web.Response(status=scripted.status, body=scripted.body, headers=scripted.headers)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

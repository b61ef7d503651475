"""The Python ceiling: a bare aiohttp pass-through proxy with no identity, policy or transform.

It does what any aiohttp reverse proxy must (read the request, forward it over a pooled
ClientSession, read the whole answer, send it back) and nothing else, so `phi-proxy / pass`
is the cost of phi-proxy's own work.
"""

from __future__ import annotations

import argparse

import aiohttp
from aiohttp import web

_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "upgrade"}
)


def build(upstream: str) -> web.Application:
    app = web.Application(client_max_size=16 << 20)
    key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=64)
        app[key] = aiohttp.ClientSession(upstream, connector=connector, auto_decompress=False)
        yield
        await app[key].close()

    async def handle(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        body = await request.read() if request.body_exists else None
        async with app[key].request(
            request.method, request.raw_path, headers=headers, data=body
        ) as answer:
            raw = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
            return web.Response(status=answer.status, body=raw, headers=out)

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    web.run_app(build(args.upstream), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()

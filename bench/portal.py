"""Fallback portal when nginx is unavailable: the same static pages from aiohttp."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web


def build(root: Path) -> web.Application:
    pages: dict[str, bytes] = {}
    top = root.resolve()

    def load(path: str) -> bytes:
        file = (top / path.lstrip("/")).resolve()
        if top not in file.parents or not file.is_file():
            raise web.HTTPNotFound
        return file.read_bytes()

    async def page(request: web.Request) -> web.Response:
        body = pages.get(request.path)
        if body is None:  # first request for this page: read it once, then serve from memory
            body = pages[request.path] = load(request.path)
        fhir = request.path.startswith("/fhir/")
        return web.Response(
            body=body, content_type="application/fhir+json" if fhir else "application/json"
        )

    async def booking(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "booked"}, status=201)

    app = web.Application(client_max_size=16 << 20)
    app.router.add_post("/api/bookings", booking)
    app.router.add_get("/{tail:.*}", page)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    web.run_app(build(args.root), host="127.0.0.1", port=args.port, access_log=None)


if __name__ == "__main__":
    main()

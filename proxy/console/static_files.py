"""The console's own CSS, JavaScript and images, shipped in the package and served from memory.

Only the files of proxy/console/static, read once at start: no directory listing, no path from
the request ever reaches the file system, and nothing is fetched from anywhere else.
"""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING, Final

from aiohttp import web

from proxy.console.context import PREFIX

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["add_routes", "load_static"]

_TYPES: Final = {
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every file of proxy/console/static: name → (bytes, content type)."""
    files: dict[str, tuple[bytes, str]] = {}
    for entry in resources.files("proxy.console").joinpath("static").iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            files[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return files


def add_routes(router: web.UrlDispatcher, files: Mapping[str, tuple[bytes, str]]) -> None:
    """GET /console/static/{name} for the files loaded at start; 404 for any other name."""

    async def static(request: web.Request) -> web.Response:
        found = files.get(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound
        body, content_type = found
        return web.Response(body=body, content_type=content_type)

    router.add_get(f"{PREFIX}/static/{{name}}", static)

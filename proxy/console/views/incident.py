"""Incident: the records a person saw in a time window, from the verified audit trail.

Placeholder page until the view is built (branch console-evidence replaces this module).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.console.context import PREFIX
from proxy.console.pages import render, require_session

if TYPE_CHECKING:
    from aiohttp import web

    from proxy.console.context import ConsoleContext

__all__ = ["add_routes"]


async def page(request: web.Request) -> web.Response:
    """GET /console/incident."""
    require_session(request)
    return render(request, "placeholder.html", title="Incident")


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The incident view."""
    router.add_get(f"{PREFIX}/incident", page)

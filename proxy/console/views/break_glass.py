"""Break-glass queue: each emergency use, its reason and the records it disclosed; sign-off.

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
    """GET /console/break-glass."""
    require_session(request)
    return render(request, "placeholder.html", title="Break-glass")


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The break-glass queue."""
    router.add_get(f"{PREFIX}/break-glass", page)

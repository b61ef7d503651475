"""The console's views: one module each, every one exposing `add_routes(router, context)`.

To add a view: write proxy/console/views/NAME.py with `add_routes(router: web.UrlDispatcher,
context: ConsoleContext) -> None` registering its GET pages and POST actions under /console/,
put its templates in proxy/console/templates/, add the module to VIEWS below and its entry to
proxy.console.nav.NAV (the menu and the screenshots). docs/console.md, "Adding a view", says
what a handler must do (require_session, checked_form, render, audited actions).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from proxy.console.views import break_glass, grants, incident, review

if TYPE_CHECKING:
    from aiohttp import web

    from proxy.console.context import ConsoleContext

__all__ = ["VIEWS", "View"]


class View(Protocol):
    """What a view module provides."""

    def add_routes(self, router: web.UrlDispatcher, context: ConsoleContext) -> None:
        """Register the view's routes (all under /console/)."""


VIEWS: tuple[View, ...] = (grants, review, break_glass, incident)

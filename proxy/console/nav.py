"""The console's views in one list: the navigation bar and `make console-screenshots` read it.

Each entry is a page of its own. A helper adding a view adds its entry here (and its module to
proxy.console.views.VIEWS); `screenshot` names the PNG in docs/console/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["NAV", "NavItem"]


@dataclass(frozen=True, slots=True)
class NavItem:
    """One view: its label in the navigation, its path, and its screenshot's file name."""

    label: str
    path: str
    screenshot: str


NAV: Final = (
    NavItem("Grants", "/console/grants", "grants.png"),
    NavItem("Access review", "/console/review", "review.png"),
    NavItem("Break-glass", "/console/break-glass", "break-glass.png"),
    NavItem("Incident", "/console/incident", "incident.png"),
)

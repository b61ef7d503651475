"""The security headers every console response carries, error pages and static files included.

The Content-Security-Policy allows scripts, styles and images from the console's own origin only,
and nothing inline: injected markup could neither run script nor restyle the page. Forms may post
only to the console itself, no other site may frame it (clickjacking), and no `<base>` may move
its relative links. Pages are never cached (they show who can read PHI) and send no Referer to
another site.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "add_security_headers"]

CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer browsers send `Origin: null` with the
    # console's own form posts, and the Origin check (proxy.console.csrf) could not tell them
    # from a sandboxed frame's. same-origin still sends no Referer to any other site.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
}


def add_security_headers(response: web.StreamResponse) -> None:
    """Set every security header on `response` (replacing what a handler may have set)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value

"""Errors a console page shows as a page of its own, in words for a compliance officer."""

from __future__ import annotations

__all__ = ["ConsoleProblem", "Forbidden"]


class ConsoleProblem(Exception):
    """Shown as an error page with `status`: a title, what happened, and what to do."""

    def __init__(self, status: int, title: str, text: str) -> None:
        super().__init__(f"{title}: {text}")
        self.status = status
        self.title = title
        self.text = text


class Forbidden(ConsoleProblem):
    """403: the request did not come from a console page of this session (CSRF, Origin)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            403,
            "This request was refused",
            "The console only accepts changes sent from its own pages, in the same login. "
            "Nothing was changed. Reload the page and try again; if this keeps happening, log "
            "out and in again.",
        )
        self.reason = reason  # for the log only

"""Errors of the grant subsystem.

    PhiProxyError
    ├── GrantError              a grant request is refused (too long, bad subject, empty reason…)
    │   ├── GrantNotFound       revoke named a grant that does not exist or is not active
    │   └── BreakGlassLimitReached  more break-glass grants than break_glass.max_per_day
    └── GrantStoreUnavailable   the grant store cannot be opened, read or written

`access_for` never raises either: when the store cannot be read it answers "no access".
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.errors import PhiProxyError

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["BreakGlassLimitReached", "GrantError", "GrantNotFound", "GrantStoreUnavailable"]


class GrantError(PhiProxyError):
    """A request to change grants is refused; the message says why and what to ask instead."""


class GrantNotFound(GrantError):
    """No grant matches the revocation request (unknown id, or nothing active to revoke)."""


class GrantStoreUnavailable(PhiProxyError):
    """The grant store cannot be opened, read or written (file missing, locked, corrupt…)."""


class BreakGlassLimitReached(GrantError):
    """A person asked for more break-glass grants than `break_glass.max_per_day` allows."""

    def __init__(self, message: str, *, count: int, oldest: datetime | None) -> None:
        super().__init__(message)
        self.count = count
        #: When the oldest use in the 24-hour window was made (the window frees one then).
        self.oldest = oldest

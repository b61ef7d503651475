"""What a break-glass use is: a grant with a `bg_` id, and the security officer's sign-off.

A break-glass grant is an ordinary grant row (so `access_for`, revocation, offboarding and the
fleet's change notification treat it like any other) whose id starts with ``bg_``. Only the
proxy makes such ids (`phi-grants add` cannot choose an id), so the prefix marks the grants an
emergency opened everywhere they appear: listings, audit events, the access review. The
sign-off lives in its own append-only table, one row per use, never changed once written.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from proxy.grants.errors import BreakGlassLimitReached, GrantError, GrantNotFound
from proxy.grants.model import BREAK_GLASS_ID_PREFIX
from proxy.grants.store import clean_text

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.grants.model import Grant

__all__ = [
    "BREAK_GLASS_BY",
    "BREAK_GLASS_PREFIX",
    "LIMIT_WINDOW",
    "BreakGlassUse",
    "BreakGlassUses",
    "Opened",
    "SignOff",
    "already_signed_off",
    "clean_signoff",
    "is_break_glass_id",
    "limit_reached",
    "new_break_glass_id",
    "not_break_glass",
    "unknown_use",
]

BREAK_GLASS_PREFIX = BREAK_GLASS_ID_PREFIX
#: `created_by` of every break-glass grant (the grantee is the subject itself).
BREAK_GLASS_BY = "break-glass"
#: `max_per_day` counts the uses of the last 24 hours (a rolling day: no double quota at midnight).
LIMIT_WINDOW = timedelta(hours=24)


def new_break_glass_id() -> str:
    """A fresh, unguessable break-glass grant id such as ``bg_3f9a0c1e5b7d2a64``."""
    return f"{BREAK_GLASS_PREFIX}{secrets.token_hex(8)}"


def is_break_glass_id(grant_id: str) -> bool:
    """True for the ids only the proxy's break-glass path creates."""
    return grant_id.startswith(BREAK_GLASS_PREFIX)


@dataclass(frozen=True, slots=True)
class SignOff:
    """A security officer's acknowledgement of one use: who, when, and what they concluded."""

    at: datetime
    by: str
    note: str


@dataclass(frozen=True, slots=True)
class BreakGlassUse:
    """One break-glass grant and its sign-off (None while it awaits one)."""

    grant: Grant
    signoff: SignOff | None = None

    @property
    def id(self) -> str:
        """The use's id: its grant's id (``bg_…``)."""
        return self.grant.id

    def overdue(self, now: datetime, window: timedelta) -> bool:
        """True when unacknowledged for longer than `window` since the grant was made."""
        return self.signoff is None and now - self.grant.created_at > window


#: A list of uses (an alias: inside a store class, `list` names its listing method).
BreakGlassUses = list[BreakGlassUse]


@dataclass(frozen=True, slots=True)
class Opened:
    """The grant a break-glass request runs under; `new` is False when an active one was reused."""

    grant: Grant
    new: bool


def clean_signoff(by: str, note: str) -> tuple[str, str]:
    """The validated (by, note) of a sign-off: printable text, 1 to 1000 characters each."""
    return clean_text("the officer (--by)", by), clean_text("the note (--note)", note)


def unknown_use(grant_id: str) -> GrantNotFound:
    """The error for a sign-off naming an id no grant has."""
    return GrantNotFound(
        f"no break-glass use has id {grant_id!r}; see the list in: phi-grants review"
    )


def not_break_glass(grant_id: str) -> GrantError:
    """The error for a sign-off naming an ordinary grant."""
    return GrantError(
        f"grant {grant_id} is an ordinary grant, not a break-glass use (those ids start with "
        f"{BREAK_GLASS_PREFIX}); only break-glass uses are signed off"
    )


def already_signed_off(grant_id: str, at: str, by: str) -> GrantNotFound:
    """The error for a second sign-off of the same use (`at` as shown)."""
    return GrantNotFound(
        f"break-glass use {grant_id} was already signed off at {at} by {by}; a sign-off is final"
    )


def limit_reached(count: int, oldest: datetime | None, max_per_day: int) -> BreakGlassLimitReached:
    """The refusal of one more break-glass grant than `max_per_day` allows in 24 hours."""
    again = (
        ""
        if oldest is None
        else f"; the next one is possible after {oldest + LIMIT_WINDOW:%Y-%m-%d %H:%M} UTC"
    )
    return BreakGlassLimitReached(
        f"break-glass refused: {count} emergency grant(s) opened in the last 24 hours, the most "
        f"break_glass.max_per_day allows ({max_per_day}){again}. If this is a real emergency, "
        "call your security officer: they can grant access with phi-grants add",
        count=count,
        oldest=oldest,
    )

"""A subject's cached grants with the `Access` they give, reused until a grant starts or ends.

`Access.from_grants` applies each grant's not_before/expires_at to `now`, so the stores' caches
hold grants, not answers. Between two of those moments the answer cannot change (revocation is a
write, and a write empties the caches), so it is computed once per window instead of once per
request. `at(now)` recomputes when `now` leaves the window, including a clock that stepped back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.grants.model import Access

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.grants.model import Grant
    from proxy.identity import Subject

__all__ = ["AccessMemo"]


class AccessMemo:
    """The grants of one subject as read from the store, and their Access for a time window."""

    __slots__ = ("_access", "_from", "_until", "grants", "subject")

    def __init__(self, subject: Subject, grants: tuple[Grant, ...], now: datetime) -> None:
        """Remember `grants` of `subject`; the Access is computed for `now`'s window."""
        self.subject = subject
        self.grants = grants
        self._compute(now)

    def _compute(self, now: datetime) -> None:
        self._access = Access.from_grants(self.subject, self.grants, now)
        self._from = now
        # The next moment any grant's state changes: it starts (not_before) or ends (expiry).
        later = [
            moment
            for grant in self.grants
            for moment in (grant.not_before, grant.expires_at)
            if moment > now
        ]
        self._until = min(later) if later else None

    def at(self, now: datetime) -> Access:
        """What the grants allow at `now` (the same object while no grant starts or ends)."""
        if now < self._from or (self._until is not None and now >= self._until):
            self._compute(now)
        return self._access

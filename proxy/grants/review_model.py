"""What an access review is made of: its options, the findings, and each grant's last use.

Plain values shared by the checks that build a review (`review.py`) and the two renderings of
it (`review_render.py`), so both read the same facts and write times the same way.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.grants.break_glass_model import BreakGlassUse
    from proxy.grants.model import Grant
    from proxy.grants.usage import Usage

__all__ = [
    "DEFAULT_EXPIRING_WITHIN",
    "DEFAULT_UNUSED_FOR",
    "LONG_LIVED_SHARE",
    "Finding",
    "GrantReview",
    "LastUse",
    "LastUseStatus",
    "Review",
    "ReviewOptions",
    "rough_span",
    "short_time",
]

#: A grant whose lifetime is at least this share of `grants.max_ttl` is "long-lived".
LONG_LIVED_SHARE = 0.9
#: Flag grants ending within this time (`--expiring-within`'s default).
DEFAULT_EXPIRING_WITHIN = timedelta(days=14)
#: Flag grants with no disclosure in this time (`--unused-for`'s default).
DEFAULT_UNUSED_FOR = timedelta(days=30)

LastUseStatus = Literal["used", "none", "unknown", "not_checked", "not_started"]


@dataclass(frozen=True, slots=True)
class ReviewOptions:
    """What to review and the thresholds of the findings."""

    now: datetime
    max_ttl: timedelta
    expiring_within: timedelta = DEFAULT_EXPIRING_WITHIN
    unused_for: timedelta = DEFAULT_UNUSED_FOR
    practice: str | None = None
    config: str | None = None  # the -c FILE given, repeated in the commands suggested
    store: str = ""  # where the grants were read, for the header
    #: break_glass.signoff_within: an emergency use unacknowledged for longer is a finding.
    signoff_within: timedelta = timedelta(days=3)

    def command(self, tool: str) -> str:
        """`tool` with the same -c FILE, ready to paste."""
        return f"{tool} -c {shlex.quote(self.config)}" if self.config else tool


@dataclass(frozen=True, slots=True)
class Finding:
    """Something the reviewer should look at: what is true, and what to do about it."""

    code: str
    title: str
    detail: str
    action: str
    grant_id: str | None = None
    subject: str | None = None
    practice: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "action": self.action,
            "grant_id": self.grant_id,
            "subject": self.subject,
            "practice": self.practice,
        }


@dataclass(frozen=True, slots=True)
class LastUse:
    """A grant's last use as far as the trail tells; `since` is where the trail starts."""

    status: LastUseStatus
    at: datetime | None = None
    since: datetime | None = None


@dataclass(frozen=True, slots=True)
class GrantReview:
    """One grant in effect, its last use and its findings."""

    grant: Grant
    state: Literal["active", "pending"]
    last_use: LastUse
    findings: tuple[Finding, ...]


@dataclass(frozen=True, slots=True)
class Review:
    """The whole review: grants with findings, plus findings about the trail and lapsed use."""

    options: ReviewOptions
    usage: Usage
    grants: tuple[GrantReview, ...]
    findings: tuple[Finding, ...]  # not tied to one grant in effect
    #: Break-glass uses awaiting a security officer's sign-off (proxy.grants.break_glass).
    break_glass: tuple[BreakGlassUse, ...] = ()
    #: Groups the IdP pushes over SCIM that scim.groups does not map: their members get no
    #: grant from them (a renamed group, or a mapping spelled unlike the IdP's displayName).
    scim_unmapped_groups: tuple[str, ...] = ()

    @property
    def finding_count(self) -> int:
        """All findings; the exit status is 1 when this is not zero."""
        return len(self.findings) + sum(len(g.findings) for g in self.grants)


def short_time(moment: datetime) -> str:
    """A time for people, to the minute (the review states once that times are UTC)."""
    return moment.strftime("%Y-%m-%d %H:%M")


def rough_span(delta: timedelta) -> str:
    """A rough age or time left for people: 12d, 5h, 40m."""
    seconds = max(int(delta.total_seconds()), 0)
    if seconds >= 86400:  # noqa: PLR2004 - one day
        return f"{seconds // 86400}d"
    if seconds >= 3600:  # noqa: PLR2004 - one hour
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"

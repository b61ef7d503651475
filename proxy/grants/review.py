"""`phi-grants review`: the periodic access review — who can read PHI now, and what looks wrong.

The product exists because former staff kept access after they should have been removed; this
is the check that finds them before an incident does. It lists every grant in effect (active, or
scheduled to start) per practice and attaches findings a security officer acts on: expiring
soon, long-lived, never or no longer used, held at several practices, and people who kept
trying to read PHI after their grant ended.

Last use comes from the audit trail (`usage.py`). When no trail can be read, last use is
"unknown" — never guessed — and that is a finding of its own, because the review is then
incomplete. The review's values are in `review_model.py`, its text and JSON in
`review_render.py`.

Read-only: nothing here writes grants, and reading the trail never creates an audit key.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Literal

from proxy.grants.break_glass_model import is_break_glass_id
from proxy.grants.durations import format_duration
from proxy.grants.review_model import (
    LONG_LIVED_SHARE,
    Finding,
    GrantReview,
    LastUse,
    Review,
    ReviewOptions,
    rough_span,
    short_time,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from proxy.grants.model import Grant
    from proxy.grants.usage import Usage

__all__ = ["build_review"]


def _last_use(grant: Grant, usage: Usage, now: datetime) -> LastUse:
    if grant.not_before > now:
        return LastUse("not_started")
    if usage.status == "not_checked":
        return LastUse("not_checked")
    if not usage.readable:
        return LastUse("unknown")
    at = usage.last_use.get(grant.id)
    return LastUse("used" if at is not None else "none", at, usage.since)


class _Judge:
    """Turns one grant (and what is known about its use) into findings."""

    def __init__(self, options: ReviewOptions) -> None:
        self.o = options

    def revoke(self, grant: Grant, why: str) -> str:
        reason = shlex.quote(f"access review: {why}")
        return f"{self.o.command('phi-grants')} revoke --id {grant.id} --reason {reason}"

    def findings(self, grant: Grant, last: LastUse) -> tuple[Finding, ...]:
        found = [
            *self._expiry(grant),
            *self._lifetime(grant),
            *self._use(grant, last),
        ]
        return tuple(found)

    def _finding(self, grant: Grant, code: str, title: str, detail: str, action: str) -> Finding:
        return Finding(code, title, detail, action, grant.id, str(grant.subject), grant.practice)

    def _expiry(self, grant: Grant) -> list[Finding]:
        left = grant.expires_at - self.o.now
        if left > self.o.expiring_within or is_break_glass_id(grant.id):  # short by design
            return []
        fields = ""
        if grant.field_classes is not None:
            fields = f" --fields {','.join(sorted(grant.field_classes))}"
        renew = (
            f"{self.o.command('phi-grants')} add --subject {shlex.quote(str(grant.subject))} "
            f"--practice {grant.practice}{fields} --ttl 30d --reason 'renewed after review'"
        )
        return [
            self._finding(
                grant,
                "expires_soon",
                "expires soon",
                f"Access ends {short_time(grant.expires_at)} UTC ({rough_span(left)} left; "
                f"--expiring-within {format_duration(self.o.expiring_within)}).",
                f"Nothing to do if the person no longer needs it. If they do, add a new grant "
                f"before then (pick the TTL): {renew}",
            )
        ]

    def _lifetime(self, grant: Grant) -> list[Finding]:
        lifetime = grant.expires_at - grant.created_at
        if lifetime > self.o.max_ttl:
            return [
                self._finding(
                    grant,
                    "longer_than_max_ttl",
                    "longer than grants.max_ttl",
                    f"It lasts {rough_span(lifetime)} from its creation, more than today's "
                    f"grants.max_ttl ({format_duration(self.o.max_ttl)}): it was created before "
                    "max_ttl was lowered.",
                    "If the person still needs access, add a grant within max_ttl and revoke "
                    f"this one: {self.revoke(grant, 'longer than max_ttl')}",
                )
            ]
        if lifetime >= self.o.max_ttl * LONG_LIVED_SHARE:
            return [
                self._finding(
                    grant,
                    "long_lived",
                    "long-lived",
                    f"It lasts {rough_span(lifetime)} from its creation, close to grants.max_ttl "
                    f"({format_duration(self.o.max_ttl)}); a long grant outlives job changes.",
                    f"Confirm the person still works with {grant.practice} and needs every field "
                    "class listed; prefer shorter grants that are renewed. If not needed: "
                    f"{self.revoke(grant, 'no longer needed')}",
                )
            ]
        return []

    def _use(self, grant: Grant, last: LastUse) -> list[Finding]:
        """never_used / unused, only where the trail covers the whole --unused-for window."""
        if last.status not in {"used", "none"}:
            return []
        now, window = self.o.now, self.o.unused_for
        start = max(grant.not_before, grant.created_at)
        cutoff = now - window
        ask = f"Ask whether {grant.subject} still needs {grant.practice}'s PHI; if not: "
        if last.at is not None:
            if last.at >= cutoff:
                return []
            code = "unused"
            detail = (
                f"The last disclosure through this grant was {short_time(last.at)} UTC "
                f"({rough_span(now - last.at)} ago); nothing in the last {format_duration(window)} "
                "(--unused-for)."
            )
        elif start > cutoff or last.since is None or last.since > cutoff:
            # In effect for less than the window, or the trail is younger than the window:
            # not enough evidence either way.
            return []
        elif last.since <= start:
            code = "never_used"
            detail = (
                f"No PHI was disclosed through this grant since it took effect on "
                f"{short_time(start)} UTC ({rough_span(now - start)} ago)."
            )
        else:
            code = "unused"
            detail = (
                f"No disclosure through this grant since the audit trail starts on "
                f"{short_time(last.since)} UTC ({rough_span(now - last.since)} ago; older use, "
                "if any, is not in the trail read)."
            )
        title = "never used" if code == "never_used" else "not used lately"
        action = ask + self.revoke(grant, title.replace(" lately", ""))
        return [self._finding(grant, code, title, detail, action)]


def _review_findings(usage: Usage, options: ReviewOptions) -> list[Finding]:
    found: list[Finding] = []
    if usage.status == "unknown":
        found.append(
            Finding(
                "usage_unknown",
                "last use unknown",
                f"Last use could not be read: {usage.reason}. Unused grants cannot be found "
                "without it, so every grant's last use is 'unknown'.",
                "Run the review where the audit trail is readable (the proxy's host, or with "
                "the fleet's audit database reachable), or pass --skip-usage if you review "
                "last use elsewhere.",
            )
        )
    elif usage.status == "unverified":
        found.append(
            Finding(
                "audit_unverified",
                "audit trail not verified",
                f"{usage.reason}. Last use below comes from a trail that may be incomplete "
                "or altered.",
                f"Run {options.command('phi-audit')} verify, and keep the trail untouched as "
                "evidence until you know why it does not verify.",
            )
        )
    for lapsed in usage.lapsed:
        if options.practice is not None and lapsed.practice != options.practice:
            continue
        subject = shlex.quote(lapsed.subject)
        when = (
            f"1 request at {short_time(lapsed.last)} UTC"
            if lapsed.requests == 1
            else f"{lapsed.requests} requests between {short_time(lapsed.first)} and "
            f"{short_time(lapsed.last)} UTC"
        )
        found.append(
            Finding(
                "used_after_lapse",
                "tried to read PHI after the grant ended",
                f"{when} by {lapsed.subject} asked for {lapsed.practice}'s PHI after their "
                "grant there was revoked or expired; the proxy masked it.",
                "Their login still works: disable the account at the identity provider (or in "
                "the portal) and find out why it is still used. What they saw before: "
                f"{options.command('phi-audit')} report --subject {subject}",
                subject=lapsed.subject,
                practice=lapsed.practice,
            )
        )
    return found


def _several_practices(in_effect: list[Grant], options: ReviewOptions) -> list[Finding]:
    """One finding per person holding grants at more than one practice.

    Counted over every practice, also when the review is filtered to one: that is exactly what
    a practice's reviewer cannot see from their own list.
    """
    held: dict[str, dict[str, list[str]]] = {}
    for grant in in_effect:
        held.setdefault(str(grant.subject), {}).setdefault(grant.practice, []).append(grant.id)
    found = []
    for subject, practices in sorted(held.items()):
        if len(practices) == 1 or (options.practice and options.practice not in practices):
            continue
        listing = "; ".join(f"{p} ({', '.join(ids)})" for p, ids in sorted(practices.items()))
        found.append(
            Finding(
                "several_practices",
                "grants at several practices",
                f"{subject} holds grants at {len(practices)} practices: {listing}.",
                "Confirm they work for each of these practices; remove the ones they should "
                f"not have: {options.command('phi-grants')} revoke --subject "
                f"{shlex.quote(subject)} --practice PRACTICE --reason 'access review'",
                subject=subject,
            )
        )
    return found


def build_review(grants: Iterable[Grant], usage: Usage, options: ReviewOptions) -> Review:
    """Review every grant in effect at `options.now` (active or scheduled to start)."""
    now = options.now
    in_effect = [g for g in grants if g.revoked_at is None and g.expires_at > now]
    shown = sorted(
        (g for g in in_effect if options.practice is None or g.practice == options.practice),
        key=lambda g: (g.practice, str(g.subject), g.expires_at, g.id),
    )
    judge = _Judge(options)
    reviewed = []
    for grant in shown:
        last = _last_use(grant, usage, now)
        state: Literal["active", "pending"] = "pending" if grant.not_before > now else "active"
        reviewed.append(GrantReview(grant, state, last, judge.findings(grant, last)))
    found = [*_review_findings(usage, options), *_several_practices(in_effect, options)]
    return Review(options, usage, tuple(reviewed), tuple(found))

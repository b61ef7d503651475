"""The access review written out: a report for people, and one JSON document for scripts.

The text and the JSON say the same things; the JSON shape is documented in docs/grants.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from proxy.audit.report import align_columns
from proxy.grants.break_glass import use_json, use_lines
from proxy.grants.durations import format_duration
from proxy.grants.model import LAPSED_LOOKBACK
from proxy.grants.review_model import LONG_LIVED_SHARE, rough_span, short_time

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.grants.model import Grant
    from proxy.grants.review_model import LastUse, Review
    from proxy.grants.usage import Usage

__all__ = ["render_json", "render_text", "review_document"]


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _last_use_text(last: LastUse, grant: Grant) -> str:
    if last.status == "used" and last.at is not None:
        return short_time(last.at)
    if last.status == "none" and last.since is not None:
        start = max(grant.not_before, grant.created_at)
        return "never" if last.since <= start else f"none since {short_time(last.since)}"
    if last.status == "not_started":
        return f"starts {short_time(grant.not_before)}"
    return last.status.replace("_", " ")


def _usage_line(usage: Usage) -> str:
    if usage.status == "not_checked":
        return "last use: not checked (--skip-usage)"
    if usage.status == "unknown":
        return f"last use: UNKNOWN - {usage.reason}"
    since = (
        f"events since {short_time(usage.since)} UTC" if usage.since is not None else "no events"
    )
    state = "verified" if usage.status == "verified" else "NOT VERIFIED"
    return f"last use: from the audit trail {usage.source} ({state}; {since})"


_HEADER = ("PRACTICE", "GRANT", "SUBJECT", "FIELDS", "GRANTED", "EXPIRES", "LAST USE", "FINDINGS")


def render_text(review: Review) -> str:
    """The report for people: header, one table row per grant, then each finding explained."""
    o, usage = review.options, review.usage
    scope = f" at {o.practice}" if o.practice else ""
    lines = [
        (
            f"phi-grants review at {short_time(o.now)} UTC (all times UTC): {len(review.grants)} "
            f"grant(s) in effect{scope}"
        ),
        f"grant store: {o.store}",
        _usage_line(usage),
        *(f"  note: {note}" for note in usage.notes),
        (
            f"checks: expires within {format_duration(o.expiring_within)}; no use for "
            f"{format_duration(o.unused_for)}; lifetime >= {round(LONG_LIVED_SHARE * 100)}% of "
            f"grants.max_ttl ({format_duration(o.max_ttl)}); grants at several practices; "
            f"requests after a grant ended (last {format_duration(LAPSED_LOOKBACK)})"
        ),
        "",
    ]
    if review.grants:
        rows: list[tuple[str, ...]] = [_HEADER]
        for item in review.grants:
            g = item.grant
            fields = "all" if g.field_classes is None else ",".join(sorted(g.field_classes))
            rows.append(
                (
                    g.practice,
                    g.id,
                    str(g.subject),
                    fields,
                    f"{short_time(g.created_at)} by {g.created_by}",
                    f"{short_time(g.expires_at)} ({rough_span(g.expires_at - o.now)} left)",
                    _last_use_text(item.last_use, g),
                    ",".join(f.code for f in item.findings) or "-",
                )
            )
        lines += align_columns(rows)
    else:
        there = " there" if scope else ""
        lines.append(f"No grant is in effect{scope}: phi-proxy decrypts nothing for anyone{there}.")
    lines += [
        "",
        *use_lines(
            review.break_glass, now=o.now, window=o.signoff_within, command=o.command("phi-grants")
        ),
    ]
    if review.scim_unmapped_groups:
        names = ", ".join(repr(name) for name in review.scim_unmapped_groups)
        lines += [
            "",
            f"SCIM groups the identity provider sends that scim.groups does not map: {names}.",
            (
                "  Their members get no grant from them. If one should grant access, add it "
                "under scim.groups with the IdP's displayName spelled exactly."
            ),
        ]
    findings = [*review.findings, *(f for g in review.grants for f in g.findings)]
    lines.append("")
    if not findings:
        lines.append("No findings. Exit status 0. Nothing was changed.")
        return "\n".join(lines)
    lines.append(f"{len(findings)} finding(s):")
    for number, finding in enumerate(findings, 1):
        about = " ".join(
            part
            for part in (
                finding.grant_id,
                finding.subject,
                f"at {finding.practice}" if finding.practice else None,
            )
            if part
        )
        lines += [
            "",
            f"{number}. {finding.title.upper()} [{finding.code}]{'  ' + about if about else ''}",
            f"   {finding.detail}",
            f"   To do: {finding.action}",
        ]
    lines += ["", "Exit status 1: findings to review (see above). Nothing was changed."]
    return "\n".join(lines)


def render_json(review: Review) -> str:
    """One JSON document for scripts; the shape is documented in docs/grants.md."""
    return orjson.dumps(review_document(review), option=orjson.OPT_INDENT_2).decode()


def review_document(review: Review) -> dict[str, Any]:
    """The review as plain JSON data: `phi-grants review --json` and the admin API's answer."""
    o, usage = review.options, review.usage
    return {
        "generated_at": _time(o.now),
        "practice": o.practice,
        "store": o.store,
        "checks": {
            "expiring_within": format_duration(o.expiring_within),
            "unused_for": format_duration(o.unused_for),
            "max_ttl": format_duration(o.max_ttl),
            "long_lived_share": LONG_LIVED_SHARE,
            "lapsed_lookback": format_duration(LAPSED_LOOKBACK),
        },
        "usage": {
            "status": usage.status,
            "source": usage.source,
            "reason": usage.reason,
            "since": _time(usage.since),
            "notes": list(usage.notes),
        },
        "grants": [
            {
                "id": item.grant.id,
                "subject": str(item.grant.subject),
                "practice": item.grant.practice,
                "fields": (
                    None if item.grant.field_classes is None else sorted(item.grant.field_classes)
                ),
                "state": item.state,
                "not_before": _time(item.grant.not_before),
                "expires_at": _time(item.grant.expires_at),
                "seconds_left": int((item.grant.expires_at - o.now).total_seconds()),
                "created_at": _time(item.grant.created_at),
                "created_by": item.grant.created_by,
                "reason": item.grant.reason,
                "last_use": {
                    "status": item.last_use.status,
                    "at": _time(item.last_use.at),
                    "trail_since": _time(item.last_use.since),
                },
                "findings": [f.to_json() for f in item.findings],
            }
            for item in review.grants
        ],
        "break_glass": {
            "signoff_within": format_duration(o.signoff_within),
            "awaiting_signoff": [
                use_json(use, now=o.now, window=o.signoff_within) for use in review.break_glass
            ],
        },
        "scim_unmapped_groups": list(review.scim_unmapped_groups),
        "findings": [f.to_json() for f in review.findings],
        "finding_count": review.finding_count,
    }

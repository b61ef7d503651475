"""Access review: the findings of `phi-grants review`, one action each, and a CSV for sign-off.

The review is proxy.grants.cli_review.access_review, the same function `phi-grants review` and
GET /api/v1/review call, so the page, the CSV and `phi-grants review --json` say the same things.
The actions link to the confirmed, audited forms of the other views (renew, revoke, sign off).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiohttp import web
from yarl import URL

from proxy.console.context import CONSOLE, PREFIX
from proxy.console.errors import ConsoleProblem
from proxy.console.pages import render, require_session
from proxy.grants.cli_review import access_review
from proxy.grants.durations import parse_duration
from proxy.grants.review_model import DEFAULT_EXPIRING_WITHIN, DEFAULT_UNUSED_FOR
from proxy.grants.review_render import review_document

if TYPE_CHECKING:
    from datetime import timedelta
    from typing import Any

    from proxy.console.context import ConsoleContext

__all__ = ["CSV_COLUMNS", "add_routes", "csv_rows"]

#: Findings whose one action is renewing the grant; revoking; looking at the person's grants.
_RENEW: Final = frozenset({"expires_soon"})
_REVOKE: Final = frozenset({"never_used", "unused", "long_lived", "longer_than_max_ttl"})

CSV_COLUMNS: Final = (
    "practice",
    "grant_id",
    "subject",
    "fields",
    "state",
    "not_before",
    "expires_at",
    "created_at",
    "created_by",
    "reason",
    "last_use",
    "last_use_at",
    "findings",
    "finding_details",
)


@dataclass(frozen=True, slots=True)
class Action:
    """The one thing the page offers for a finding: a label and where it leads."""

    label: str
    href: str


def action_for(finding: dict[str, Any]) -> Action | None:
    """The finding's action in the console (None: information for the IT team only)."""
    code, grant_id, subject = finding["code"], finding["grant_id"], finding["subject"]
    if code in _RENEW and grant_id:
        return Action("Renew…", f"{PREFIX}/grants/{grant_id}/renew?from=review")
    if code in _REVOKE and grant_id:
        return Action("Revoke…", f"{PREFIX}/grants/{grant_id}/revoke?from=review")
    if code == "several_practices" and subject:
        return Action(
            "See this person's grants", str(URL(f"{PREFIX}/grants").with_query(subject=subject))
        )
    if code == "break_glass_unacknowledged":
        return Action("Sign off…", f"{PREFIX}/break-glass")
    if code == "used_after_lapse" and subject:
        return Action(
            "Open incident view", str(URL(f"{PREFIX}/incident").with_query(subject=subject))
        )
    return None


#: Last use as the page says it (statuses of `phi-grants review --json`).
LAST_USE_WORDS: Final = {
    "none": "not used",
    "unknown": "unknown",
    "not_checked": "not checked",
    "not_started": "not started yet",
}


#: Each kind of finding in words for a compliance officer; {who}, {where}, {ends}, {max_ttl}
#: and {unused_for} are filled in (the review's own text, for IT, is shown as technical detail).
_PLAIN: Final = {
    "expires_soon": "{who}'s access to {where} ends on {ends}. Renew it if they still need it; "
    "otherwise nothing needs doing.",
    "long_lived": "{who}'s access to {where} runs until {ends}, close to the longest allowed "
    "({max_ttl}). Long access outlives job changes: confirm they still need it, or revoke it.",
    "longer_than_max_ttl": "{who}'s access to {where} runs until {ends}, longer than is allowed "
    "today ({max_ttl}). Renew it for a shorter time if they still need it, and revoke this one.",
    "never_used": "{who} has never used their access to {where}. If they do not need it, "
    "revoke it.",
    "unused": "{who} has not used their access to {where} for more than {unused_for}. If they "
    "no longer need it, revoke it.",
    "several_practices": "{who} can read protected data at more than one practice. Check that "
    "each one is still needed.",
    "break_glass_unacknowledged": "{who} used emergency access at {where} and it has not been "
    "signed off in time. Review the reason and sign it off.",
    "used_after_lapse": "{who} tried to read {where}'s protected data after their access had "
    "ended. Look at what they tried to see.",
}
_UNCHECKED: Final = (
    "The review could not check everything (see the technical detail). Tell your IT team."
)


def explain(
    finding: dict[str, Any], grants: dict[str, dict[str, Any]], checks: dict[str, Any]
) -> str:
    """The finding in words for a compliance officer."""
    grant = grants.get(finding["grant_id"] or "", {})
    ends = grant.get("expires_at")
    return _PLAIN.get(finding["code"], _UNCHECKED).format(
        who=(finding["subject"] or "").rpartition("|")[2] or "This person",
        where=finding["practice"] or "the practice",
        ends="—" if not ends else str(ends)[:10],
        max_ttl=checks["max_ttl"],
        unused_for=checks["unused_for"],
    )


def _options(request: web.Request) -> tuple[str | None, timedelta, timedelta]:
    practice = request.query.get("practice", "").strip() or None
    try:
        expiring = parse_duration(request.query.get("expiring_within") or "14d")
        unused = parse_duration(request.query.get("unused_for") or "30d")
    except ValueError as exc:
        raise ConsoleProblem(422, "That period is not understood", f"{exc}") from None
    return practice, expiring, unused


async def _document(request: web.Request) -> dict[str, Any]:
    context = request.app[CONSOLE]
    practice, expiring, unused = _options(request)
    api = context.api
    review = await access_review(
        api.grant_store(),
        api.settings.grants,
        now=api.clock(),
        config_path=api.config_path,
        practice=practice,
        expiring_within=expiring,
        unused_for=unused,
        config_label=str(api.config_path),
    )
    return review_document(review)


async def review_page(request: web.Request) -> web.Response:
    """GET /console/review: the review as a page, with one action per finding."""
    require_session(request)
    document = await _document(request)
    findings = [
        *document["findings"],
        *(f for g in document["grants"] for f in g["findings"]),
    ]
    grants = {g["id"]: g for g in document["grants"]}
    practice = _options(request)[0]
    return render(
        request,
        "review.html",
        title="Access review",
        review=document,
        findings=[(f, explain(f, grants, document["checks"]), action_for(f)) for f in findings],
        last_use_words=LAST_USE_WORDS,
        practice=practice or "",
        expiring_within=request.query.get("expiring_within") or "14d",
        unused_for=request.query.get("unused_for") or "30d",
        csv_href=str(
            URL(f"{PREFIX}/review.csv").with_query(
                {
                    k: v
                    for k, v in request.query.items()
                    if k in {"practice", "expiring_within", "unused_for"}
                }
            )
        ),
        defaults=(DEFAULT_EXPIRING_WITHIN, DEFAULT_UNUSED_FOR),
    )


def _cell(value: object) -> str:
    """Text for a spreadsheet cell; one that a spreadsheet would run as a formula is quoted."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text


def csv_rows(document: dict[str, Any]) -> list[list[str]]:
    """The review as CSV rows (header first): every grant in effect, then general findings."""
    rows = [list(CSV_COLUMNS)]
    for grant in document["grants"]:
        last = grant["last_use"]
        rows.append(
            [
                _cell(v)
                for v in (
                    grant["practice"],
                    grant["id"],
                    grant["subject"],
                    "all" if grant["fields"] is None else " ".join(grant["fields"]),
                    grant["state"],
                    grant["not_before"],
                    grant["expires_at"],
                    grant["created_at"],
                    grant["created_by"],
                    grant["reason"],
                    last["status"],
                    last["at"],
                    "; ".join(f["code"] for f in grant["findings"]),
                    " | ".join(f["detail"] for f in grant["findings"]),
                )
            ]
        )
    for finding in document["findings"]:
        row = [""] * len(CSV_COLUMNS)
        row[CSV_COLUMNS.index("practice")] = _cell(finding["practice"])
        row[CSV_COLUMNS.index("grant_id")] = _cell(finding["grant_id"])
        row[CSV_COLUMNS.index("subject")] = _cell(finding["subject"])
        row[CSV_COLUMNS.index("findings")] = _cell(finding["code"])
        row[CSV_COLUMNS.index("finding_details")] = _cell(finding["detail"])
        rows.append(row)
    return rows


async def review_csv(request: web.Request) -> web.Response:
    """GET /console/review.csv: the review for the quarterly sign-off, as a spreadsheet."""
    require_session(request)
    document = await _document(request)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(csv_rows(document))
    day = str(document["generated_at"])[:10]
    return web.Response(
        body=out.getvalue().encode("utf-8"),
        content_type="text/csv",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="access-review-{day}.csv"'},
    )


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The review page and its CSV export."""
    router.add_get(f"{PREFIX}/review", review_page)
    router.add_get(f"{PREFIX}/review.csv", review_csv)

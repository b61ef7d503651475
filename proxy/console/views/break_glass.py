"""Break-glass queue: each emergency use, its reason and the records it disclosed; sign-off.

GET /console/break-glass lists the uses awaiting sign-off (oldest first, overdue ones marked)
and those signed off, each with what the verified audit trail shows was disclosed under it
(proxy.console.break_glass_queue). POST /console/break-glass/{id}/acknowledge signs one off
through proxy.admin_api.operations.sign_off, the function behind `POST
/api/v1/break-glass/{id}/acknowledge` and, through proxy.grants.break_glass, `phi-grants review
--acknowledge`: final, and audited with the administrator's subject and `via: console`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

from yarl import URL

from proxy.admin_api import operations
from proxy.admin_api.models import BREAK_GLASS_ID_PATTERN
from proxy.audit.report import printable
from proxy.console.break_glass_queue import load_queue
from proxy.console.context import CONSOLE, PREFIX
from proxy.console.errors import ConsoleProblem
from proxy.console.pages import (
    actor,
    audited_read,
    checked_form,
    redirect,
    render,
    require_session,
)
from proxy.console.views.grants import not_audited
from proxy.grants.durations import format_duration

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from aiohttp import web

    from proxy.console.break_glass_queue import BreakGlassQueue, QueueEntry
    from proxy.console.context import ConsoleContext

__all__ = ["add_routes", "queue_values"]

#: A sign-off note's length bounds (the store refuses more than 1000 characters).
_MAX_NOTE: Final = 1000
_MIN_NOTE: Final = 5


def _spoken(span: timedelta) -> str:
    """A sign-off window as words: 3 days, 12 hours, 1 day 6 hours."""
    days, hours = span.days, span.seconds // 3600
    parts = [
        f"{n} {unit}{'s' if n != 1 else ''}" for n, unit in ((days, "day"), (hours, "hour")) if n
    ]
    return " ".join(parts) or format_duration(span)


def _at(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M}"


def _shown_time(text: str) -> str:
    return text.replace("T", " ").removesuffix("Z").split(".", 1)[0]


def _entry(entry: QueueEntry, now: datetime) -> dict[str, Any]:
    """One use as the template shows it (every text from the store or trail made printable)."""
    grant, signoff = entry.grant, entry.signoff
    subject = str(grant.subject)
    return {
        "id": grant.id,
        "person": printable(subject.rsplit("|", 1)[-1]),
        "subject": printable(subject),
        "practice": printable(grant.practice),
        "fields": "all" if grant.field_classes is None else ", ".join(sorted(grant.field_classes)),
        "opened": _at(grant.created_at),
        "state": entry.state(now),
        "until": _at(grant.revoked_at or grant.expires_at),
        "reason": printable(grant.reason),
        "overdue": entry.overdue,
        "requests": entry.requests,
        "first_request": _shown_time(entry.first_request),
        "last_request": _shown_time(entry.last_request),
        "records": entry.records,
        "request_ids": [printable(r) for r in entry.request_ids],
        "disclosed": [
            {
                "record": printable(r.record),
                "field_class": printable(r.field_class),
                "count": r.count,
                "first_seen": _shown_time(r.first_seen),
                "last_seen": _shown_time(r.last_seen),
            }
            for r in entry.disclosed
        ],
        "signoff": None
        if signoff is None
        else {"at": _at(signoff.at), "by": printable(signoff.by), "note": printable(signoff.note)},
        "incident_href": str(
            URL(f"{PREFIX}/incident").with_query(
                subject=subject, since=grant.created_at.strftime("%Y-%m-%dT%H:%MZ")
            )
        ),
    }


def queue_values(queue: BreakGlassQueue, signed: str = "") -> dict[str, Any]:
    """What break_glass.html shows of `queue`; `signed`: the use just signed off, if any."""
    now = queue.now
    return {
        "awaiting": [_entry(e, now) for e in queue.awaiting],
        "signed_off": [_entry(e, now) for e in queue.signed_off],
        "signed_off_total": queue.signed_off_total,
        "within": _spoken(queue.signoff_within),
        "verification": queue.verification,
        "just_signed": next(
            (_entry(e, now) for e in queue.signed_off if e.grant.id == signed), None
        ),
        "max_note": _MAX_NOTE,
        "min_note": _MIN_NOTE,
    }


async def queue_page(request: web.Request) -> web.Response:
    """GET /console/break-glass: the queue, with the trail's verification result."""
    require_session(request)
    context = request.app[CONSOLE]
    now = context.api.clock()
    await audited_read(request, "break_glass_queue", {})
    queue = await load_queue(context.api.grant_store(), context.api.config_path, now=now)
    values = queue_values(queue, request.query.get("signed", ""))
    return render(request, "break_glass.html", title="Break-glass", **values)


def _note(form: Any) -> str:  # noqa: ANN401 - the form's MultiDictProxy
    values = form.getall("note", [])
    note = values[0].strip() if len(values) == 1 and isinstance(values[0], str) else ""
    if not _MIN_NOTE <= len(note) <= _MAX_NOTE or not note.isprintable():
        raise ConsoleProblem(
            422,
            "A note is required to sign off",
            f"Write what you checked and what you concluded ({_MIN_NOTE} to {_MAX_NOTE} "
            "characters, one line); it is kept with the sign-off and in the audit trail. "
            "Nothing was signed off.",
        )
    return note


async def acknowledge(request: web.Request) -> web.Response:
    """POST /console/break-glass/{grant_id}/acknowledge: sign one use off (final, audited)."""
    form = await checked_form(request)
    grant_id = request.match_info["grant_id"]
    if re.fullmatch(BREAK_GLASS_ID_PATTERN, grant_id) is None:
        raise ConsoleProblem(
            404, "No such emergency use", "Nothing was signed off. Go back to the break-glass list."
        )
    note = _note(form)
    context = request.app[CONSOLE]
    try:
        use = await operations.sign_off(context.api, actor(request), grant_id, note=note)
    except operations.NotAudited as exc:
        raise not_audited(exc) from None
    return redirect(str(URL(f"{PREFIX}/break-glass").with_query(signed=use.id)))


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The break-glass queue and its sign-off action."""
    router.add_get(f"{PREFIX}/break-glass", queue_page)
    router.add_post(f"{PREFIX}/break-glass/{{grant_id}}/acknowledge", acknowledge)

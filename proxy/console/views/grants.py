"""Grants: who may read which practice's PHI; renew, revoke, offboard (each confirmed, audited).

Every change is two POSTs: the form (with its required reason) shows a confirmation page saying
exactly what will change, and only its "Confirm" button makes the change, through
proxy.admin_api.operations, as `phi-grants revoke|add|offboard` and the admin API do, audited
with the administrator's subject and `via: console`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from yarl import URL

from proxy.admin_api import operations
from proxy.admin_api.handlers import grant_out
from proxy.console.context import CONSOLE, PREFIX
from proxy.console.errors import ConsoleProblem
from proxy.console.pages import actor, checked_form, render, require_session
from proxy.grants.break_glass_model import is_break_glass_id
from proxy.grants.durations import format_duration, parse_duration
from proxy.identity.subject import Subject

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from aiohttp import web
    from multidict import MultiDictProxy

    from proxy.admin_api.models import GrantOut
    from proxy.console.context import ConsoleContext
    from proxy.grants.model import Grant

__all__ = ["add_routes"]

#: The states a filter may ask for; "current" is active or pending (the default).
STATES: Final = ("current", "active", "pending", "expired", "revoked", "all")
#: Renewal lengths offered (those above grants.max_ttl are left out).
RENEW_CHOICES: Final = ("7d", "30d", "90d", "180d", "365d")
_MAX_REASON: Final = 500
_MIN_REASON: Final = 5


def _text(form: MultiDictProxy[str | bytes | object], name: str) -> str:
    values = form.getall(name, [])
    return values[0].strip() if len(values) == 1 and isinstance(values[0], str) else ""


def _reason(form: MultiDictProxy[str | bytes | object]) -> str:
    reason = _text(form, "reason")
    if not _MIN_REASON <= len(reason) <= _MAX_REASON or not reason.isprintable():
        raise ConsoleProblem(
            422,
            "A reason is required",
            f"Write why ({_MIN_REASON} to {_MAX_REASON} characters, one line); it is kept in the "
            "grant's history. Nothing was changed.",
        )
    return reason


def _subject(text: str) -> Subject:
    try:
        return Subject.parse(text)
    except ValueError as exc:
        raise ConsoleProblem(
            422, "That is not a person's identifier", f"{exc}. Nothing was changed."
        ) from None


#: Where a change may send the officer back to: the view it was started from.
_BACK: Final = {"review": f"{PREFIX}/review", "grants": f"{PREFIX}/grants"}


def _back(value: str | None) -> str:
    """`from` of the request, as one of the known views (never a URL from the request)."""
    return value if value in _BACK else "grants"


def _person_filter(text: str) -> tuple[Subject | None, str]:
    """(exact subject, part of a name): ISSUER|SUB is exact, anything else a part of the name."""
    if "|" in text:
        return _subject(text), ""
    return None, text.casefold()


def _named(grant: GrantOut, part: str) -> bool:
    return not part or part in grant.subject.rpartition("|")[2].casefold()


def _matches(grant: GrantOut, state: str) -> bool:
    if state == "all":
        return True
    if state == "current":
        return grant.state in {"active", "pending"}
    return grant.state == state


def _check_renewable(action: str, grant: Grant, now: datetime) -> None:
    """A renewal continues a grant in effect; never a lapsed one or an emergency (bg_) one."""
    if action != "renew":
        return
    if is_break_glass_id(grant.id):
        raise ConsoleProblem(
            409,
            "Emergency access cannot be renewed",
            "This is a break-glass grant: it ends by design. If the person needs regular access, "
            "an administrator adds a grant for it. Nothing was changed.",
        )
    if grant_out(grant, now).state not in {"active", "pending"}:
        raise ConsoleProblem(
            409,
            "This grant has already ended",
            "Only access still in effect can be renewed. Nothing was changed.",
        )


async def _find(context: ConsoleContext, grant_id: str) -> Grant:
    for grant in await context.api.grant_store().list():
        if grant.id == grant_id:
            return grant
    raise ConsoleProblem(
        404, "No such grant", f"There is no grant {grant_id!r}. It may have been removed."
    )


async def list_grants(request: web.Request) -> web.Response:
    """GET /console/grants: the grants, filtered by practice, person and state."""
    require_session(request)
    context = request.app[CONSOLE]
    practice = request.query.get("practice", "").strip() or None
    subject_text = request.query.get("subject", "").strip()
    state = request.query.get("state", "current")
    if state not in STATES:
        state = "current"
    subject, part = _person_filter(subject_text)
    now = context.api.clock()
    grants = await context.api.grant_store().list(practice=practice, subject=subject)
    shown = [
        g for g in (grant_out(g, now) for g in grants) if _matches(g, state) and _named(g, part)
    ]
    shown.sort(key=lambda g: (g.practice, g.subject, g.expires_at))
    practices = sorted({g.practice for g in await context.api.grant_store().list()})
    return render(
        request,
        "grants.html",
        title="Grants",
        grants=shown,
        practice=practice or "",
        subject=subject_text,
        state=state,
        states=STATES,
        practices=practices,
        now=now,
    )


async def change_form(request: web.Request) -> web.Response:
    """GET /console/grants/{id}/revoke|renew: the form for one change, reason required."""
    require_session(request)
    context = request.app[CONSOLE]
    action = request.match_info["action"]
    grant = await _find(context, request.match_info["grant_id"])
    now = context.api.clock()
    _check_renewable(action, grant, now)
    return render(
        request,
        "grant_change.html",
        title=f"{action.capitalize()} grant",
        action=action,
        grant=grant_out(grant, now),
        choices=_renew_choices(context.api.settings.grants.max_ttl),
        came_from=_back(request.query.get("from")),
        back_href=_BACK[_back(request.query.get("from"))],
    )


def _renew_choices(max_ttl: timedelta) -> list[str]:
    return [c for c in RENEW_CHOICES if parse_duration(c) <= max_ttl] or [format_duration(max_ttl)]


async def change(request: web.Request) -> web.Response:
    """POST /console/grants/{id}/revoke|renew: confirm first, then change (audited)."""
    form = await checked_form(request)
    context = request.app[CONSOLE]
    action = request.match_info["action"]
    grant = await _find(context, request.match_info["grant_id"])
    reason = _reason(form)
    ttl_text = _text(form, "ttl") if action == "renew" else ""
    if action == "renew" and ttl_text not in _renew_choices(context.api.settings.grants.max_ttl):
        raise ConsoleProblem(422, "Choose how long", "Pick one of the offered lengths.")
    now = context.api.clock()
    _check_renewable(action, grant, now)
    came_from = _back(_text(form, "from"))
    if _text(form, "confirm") != "yes":
        return render(
            request,
            "grant_confirm.html",
            title=f"Confirm: {action} grant",
            action=action,
            grant=grant_out(grant, now),
            reason=reason,
            ttl=ttl_text,
            came_from=came_from,
            back_href=_BACK[came_from],
        )
    who = actor(request)
    try:
        if action == "revoke":
            changed, now = await operations.revoke(
                context.api, who, grant_id=grant.id, subject=None, practice=None, reason=reason
            )
        else:
            renewal = operations.Actor(who.identity, {**who.via, "renews": grant.id})
            new, now = await operations.add(
                context.api,
                renewal,
                subject=grant.subject,
                practice=grant.practice,
                field_classes=grant.field_classes,
                ttl=parse_duration(ttl_text),
                not_before=None,
                reason=reason,
            )
            changed = [new]
    except operations.NotAudited as exc:
        raise not_audited(exc) from None
    done = "revoked" if action == "revoke" else "renewed"
    return render(
        request,
        "grant_done.html",
        title=f"Grant {done}",
        done=done,
        grants=[grant_out(g, now) for g in changed],
        back=(
            _BACK["review"]
            if came_from == "review"
            else str(URL(f"{PREFIX}/grants").with_query(practice=grant.practice))
        ),
        back_label="Back to the access review" if came_from == "review" else "Back to grants",
    )


def not_audited(exc: operations.NotAudited) -> ConsoleProblem:
    """The page for a change that was made but could not be written to the audit trail."""
    what = ", ".join(g.id for g in exc.grants) or (exc.use.id if exc.use else "the change")
    return ConsoleProblem(
        500,
        "Changed, but NOT recorded in the audit trail",
        f"The change WAS made ({what}), but the audit trail could not be written: {exc.error}. "
        "An alert was raised. Tell your security officer so the change can be recorded by hand, "
        "and do not repeat it.",
    )


async def offboard_form(request: web.Request) -> web.Response:
    """GET /console/grants/offboard: end every grant of one person, at every practice."""
    require_session(request)
    context = request.app[CONSOLE]
    subject_text = request.query.get("subject", "").strip()
    grants: list[GrantOut] = []
    candidates: list[str] = []
    if subject_text:
        now = context.api.clock()
        subject, part = _person_filter(subject_text)
        found = await context.api.grant_store().list(subject=subject)
        current = [g for g in (grant_out(g, now) for g in found) if _matches(g, "current")]
        if subject is not None:
            grants = current
        else:  # part of a name: let the officer pick the exact person
            candidates = sorted({g.subject for g in current if _named(g, part)})
    return render(
        request,
        "offboard.html",
        title="Offboard a person",
        subject=subject_text,
        exact="|" in subject_text,
        grants=grants,
        candidates=candidates,
    )


async def offboard(request: web.Request) -> web.Response:
    """POST /console/grants/offboard: confirm, then revoke every grant of the person (audited)."""
    form = await checked_form(request)
    context = request.app[CONSOLE]
    subject = _subject(_text(form, "subject"))
    reason = _reason(form)
    now = context.api.clock()
    if _text(form, "confirm") != "yes":
        found = await context.api.grant_store().list(subject=subject)
        current = [g for g in (grant_out(g, now) for g in found) if _matches(g, "current")]
        return render(
            request,
            "offboard_confirm.html",
            title="Confirm: offboard",
            subject=str(subject),
            reason=reason,
            grants=current,
        )
    try:
        revoked, now = await operations.offboard(
            context.api, actor(request), subject, reason=reason
        )
    except operations.NotAudited as exc:
        raise not_audited(exc) from None
    return render(
        request,
        "grant_done.html",
        title="Person offboarded",
        done="revoked",
        grants=[grant_out(g, now) for g in revoked],
        back=f"{PREFIX}/grants",
        back_label="Back to grants",
    )


def add_routes(router: web.UrlDispatcher, _context: ConsoleContext) -> None:
    """The grants list, the per-grant change forms and the offboarding form."""
    router.add_get(f"{PREFIX}/grants", list_grants)
    router.add_get(f"{PREFIX}/grants/{{grant_id}}/{{action:revoke|renew}}", change_form)
    router.add_post(f"{PREFIX}/grants/{{grant_id}}/{{action:revoke|renew}}", change)
    router.add_get(f"{PREFIX}/grants/offboard", offboard_form)
    router.add_post(f"{PREFIX}/grants/offboard", offboard)

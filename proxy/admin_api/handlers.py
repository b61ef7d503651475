"""The admin API's endpoints: thin adapters from validated JSON to the functions the CLIs call.

Grants change through proxy.grants.changes (as `phi-grants add|revoke|offboard`), the review is
proxy.grants.cli_review.access_review (as `phi-grants review`), the report is
proxy.audit.trail_report (as `phi-audit report`). The administrator's subject, taken from the
verified token and never from the request body, is the grant history's `by` and the audit
event's actor.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from proxy.admin_api import operations
from proxy.admin_api.auth import AdminIdentity
from proxy.admin_api.models import (
    BREAK_GLASS_ID_PATTERN,
    AcknowledgeBreakGlass,
    AddGrant,
    AdminIdentityOut,
    ChangeResult,
    GrantList,
    GrantOut,
    Offboard,
    ReportOut,
    ReportRowOut,
    RevokeGrants,
    SignoffOut,
)
from proxy.admin_api.operations import Actor, NotAudited
from proxy.admin_api.problems import ApiProblem, invalid
from proxy.admin_api.queries import ListQuery, ReportQuery, ReviewQuery, parse_query
from proxy.grants.break_glass import signoff_details
from proxy.grants.changes import utc_text
from proxy.grants.cli_review import access_review
from proxy.grants.durations import parse_duration
from proxy.grants.review_render import review_document
from proxy.identity.subject import Subject
from proxy.logs import ALERT_LOGGER

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from proxy.grants.break_glass_model import BreakGlassUse
    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore
    from proxy.settings import Settings

__all__ = ["ADMIN", "CONTEXT", "REQUEST_ID", "ApiContext", "add_routes"]

_alerts = logging.getLogger(ALERT_LOGGER)
_log = logging.getLogger("phi_proxy.admin_api")
_Model = TypeVar("_Model", bound=BaseModel)

PREFIX = "/api/v1"


@dataclass
class ApiContext:
    """What every handler needs: settings, the config file (audit, review), the store, a clock."""

    settings: Settings
    config_path: Path
    clock: Callable[[], datetime]
    store: GrantStore | None = None

    def grant_store(self) -> GrantStore:
        """The open grant store (it is opened when the listener starts)."""
        if self.store is None:  # pragma: no cover - the cleanup context opens it first
            raise RuntimeError("the admin API's grant store is not open")
        return self.store


CONTEXT: web.AppKey[ApiContext] = web.AppKey("phi_proxy_admin_api", ApiContext)
REQUEST_ID = web.RequestKey("phi_proxy_admin_api_request_id", str)
ADMIN = web.RequestKey("phi_proxy_admin_api_admin", AdminIdentity)


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(model.model_dump(mode="json")),
        status=status,
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def _body(request: web.Request, model: type[_Model]) -> _Model:
    raw = await request.read()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ApiProblem(
            400,
            "not-json",
            "the body is not JSON",
            "the request body must be one JSON object (Content-Type: application/json); "
            "nothing was changed",
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(exc, "body") from None


def _subject(text: str) -> Subject:
    try:
        return Subject.parse(text)
    except ValueError as exc:
        raise ApiProblem(
            422, "invalid-subject", "invalid subject", f"subject: {exc}; nothing was changed"
        ) from None


def _state(grant: Grant, now: datetime) -> str:
    if grant.revoked_at is not None:
        return "revoked"
    if grant.expires_at <= now:
        return "expired"
    return "pending" if grant.not_before > now else "active"


def grant_out(grant: Grant, now: datetime) -> GrantOut:
    """A grant as the API shows it (the fields of `phi-grants list --json`, plus its state)."""
    return GrantOut(
        id=grant.id,
        subject=str(grant.subject),
        practice=grant.practice,
        fields=None if grant.field_classes is None else sorted(grant.field_classes),
        state=_state(grant, now),
        not_before=utc_text(grant.not_before) or "",
        expires_at=utc_text(grant.expires_at) or "",
        created_at=utc_text(grant.created_at) or "",
        created_by=grant.created_by,
        reason=grant.reason,
        revoked_at=utc_text(grant.revoked_at),
        revoked_by=grant.revoked_by,
        revoke_reason=grant.revoke_reason,
    )


def _actor(request: web.Request) -> Actor:
    """The administrator and what the audit records of the API request: channel, request, jti."""
    admin = request[ADMIN]
    via = {"via": "admin_api", "admin_request": request[REQUEST_ID], "token_id": admin.token_id}
    return Actor(admin, via)


def _changed(actor: Actor, action: str, grants: list[Grant], now: datetime) -> web.Response:
    status = 201 if action == "add" else 200
    shown = [grant_out(g, now) for g in grants]
    return _json(ChangeResult(action=action, by=actor.by, grants=shown), status)


def _signoff_out(use: BreakGlassUse) -> SignoffOut:
    details = signoff_details(use)
    signoff = use.signoff
    return SignoffOut(
        grant_id=use.id,
        subject=details["subject"],
        practice=details["practice"],
        opened_at=details["opened_at"],
        by="" if signoff is None else signoff.by,
        note="" if signoff is None else signoff.note,
    )


def _not_audited(exc: NotAudited, now: datetime) -> ApiProblem:
    """A change made but not audited (the alert has fired): 500 naming what changed."""
    shown: dict[str, Any] = {}
    if exc.use is not None:
        shown["signoff"] = _signoff_out(exc.use).model_dump(mode="json")
    else:
        shown["grants"] = [grant_out(g, now).model_dump(mode="json") for g in exc.grants]
    return ApiProblem(
        500,
        "not-audited",
        "changed but not audited",
        f"the change WAS made, but the audit trail could not be written: {exc.error}",
        **shown,
    )


async def acknowledge_break_glass(request: web.Request) -> web.Response:
    """POST /api/v1/break-glass/{grant_id}/acknowledge: sign off one use (final, audited).

    As `phi-grants review --acknowledge ID --note …`, with the administrator as `--by`.
    """
    grant_id = request.match_info["grant_id"]
    if re.fullmatch(BREAK_GLASS_ID_PATTERN, grant_id) is None:
        raise ApiProblem(
            422,
            "invalid",
            "not a break-glass use id",
            "break-glass uses have ids like bg_5c1e0a9d3f7b2e64 (GET /api/v1/review lists them)",
        )
    body = await _body(request, AcknowledgeBreakGlass)
    context = request.app[CONTEXT]
    actor = _actor(request)
    try:
        use = await operations.sign_off(context, actor, grant_id, note=body.note)
    except NotAudited as exc:
        raise _not_audited(exc, context.clock()) from None
    return _json(_signoff_out(use))


async def list_grants(request: web.Request) -> web.Response:
    """GET /api/v1/grants: the grants the filters select (as `phi-grants list`)."""
    query = parse_query(request, ListQuery)
    context = request.app[CONTEXT]
    now = context.clock()
    expiring = None if query.expiring_within is None else parse_duration(query.expiring_within)
    grants = await context.grant_store().list(
        practice=query.practice,
        subject=None if query.subject is None else _subject(query.subject),
        active_at=now if (query.active or expiring is not None) else None,
        expiring_within=expiring,
    )
    shown = [grant_out(g, now) for g in grants]
    return _json(GrantList(grants=shown, count=len(shown)))


async def create_grant(request: web.Request) -> web.Response:
    """POST /api/v1/grants: add a grant (as `phi-grants add`)."""
    body = await _body(request, AddGrant)
    context = request.app[CONTEXT]
    actor = _actor(request)
    try:
        grant, now = await operations.add(
            context,
            actor,
            subject=_subject(body.subject),
            practice=body.practice,
            field_classes=None if body.fields is None else frozenset(body.fields),
            ttl=_duration(body.ttl),
            not_before=None if body.not_before is None else _aware(body.not_before),
            reason=body.reason,
        )
    except NotAudited as exc:
        raise _not_audited(exc, context.clock()) from None
    return _changed(actor, "add", [grant], now)


async def revoke(request: web.Request) -> web.Response:
    """POST /api/v1/grants/revoke: revoke by id, or a person's grants at a practice."""
    body = await _body(request, RevokeGrants)
    context = request.app[CONTEXT]
    actor = _actor(request)
    try:
        revoked, now = await operations.revoke(
            context,
            actor,
            grant_id=body.grant_id,
            subject=None if body.subject is None else _subject(body.subject),
            practice=body.practice,
            reason=body.reason,
        )
    except NotAudited as exc:
        raise _not_audited(exc, context.clock()) from None
    return _changed(actor, "revoke", revoked, now)


async def offboard(request: web.Request) -> web.Response:
    """POST /api/v1/grants/offboard: every grant of a person revoked (`phi-grants offboard`)."""
    body = await _body(request, Offboard)
    context = request.app[CONTEXT]
    actor = _actor(request)
    try:
        revoked, now = await operations.offboard(
            context, actor, _subject(body.subject), reason=body.reason
        )
    except NotAudited as exc:
        raise _not_audited(exc, context.clock()) from None
    return _changed(actor, "offboard", revoked, now)


async def review(request: web.Request) -> web.Response:
    """GET /api/v1/review: the access review (as `phi-grants review --json`)."""
    query = parse_query(request, ReviewQuery)
    context = request.app[CONTEXT]
    result = await access_review(
        context.grant_store(),
        context.settings.grants,
        now=context.clock(),
        config_path=context.config_path,
        practice=query.practice,
        expiring_within=parse_duration(query.expiring_within),
        unused_for=parse_duration(query.unused_for),
        skip_usage=query.skip_usage,
        config_label=str(context.config_path),
    )
    return web.Response(
        body=orjson.dumps(review_document(result)),
        content_type="application/json",
        headers={"Cache-Control": "no-store"},
    )


async def report(request: web.Request) -> web.Response:
    """GET /api/v1/audit/report: who saw which records (as `phi-audit report`), verified."""
    from proxy.audit.report import ReportFilter  # noqa: PLC0415 - keeps startup light
    from proxy.audit.trail_report import configured_report  # noqa: PLC0415

    query = parse_query(request, ReportQuery)
    context = request.app[CONTEXT]
    where = ReportFilter(
        subject=query.subject,
        practice=query.practice,
        record=query.record,
        since=None if query.since is None else _aware(query.since),
        until=None if query.until is None else _aware(query.until),
    )
    result = await asyncio.to_thread(configured_report, context.config_path, where)
    rows = [
        ReportRowOut(**dict(zip(ReportRowOut.model_fields, r.as_tuple(), strict=True)))
        for r in result.rows
    ]
    return _json(
        ReportOut(
            verified=result.problem is None, problem=result.problem, events=result.events, rows=rows
        )
    )


async def whoami(request: web.Request) -> web.Response:
    """GET /api/v1/whoami: the administrator the token names (to check an IdP set-up)."""
    api = request.app[CONTEXT].settings.admin_api
    admin = request[ADMIN]
    return _json(
        AdminIdentityOut(subject=str(admin.subject), role_claim=api.role_claim, role=api.role)
    )


def _aware(moment: datetime) -> datetime:
    """A time from the request in UTC; one without a zone is taken as UTC (as phi-audit does)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _duration(text: str) -> Any:  # noqa: ANN401 - a timedelta
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ApiProblem(422, "invalid-duration", "invalid duration", f"ttl: {exc}") from None


def add_routes(router: web.UrlDispatcher) -> None:
    """Every endpoint under /api/v1 (the OpenAPI document lists the same ones)."""
    router.add_get(f"{PREFIX}/whoami", whoami)
    router.add_get(f"{PREFIX}/grants", list_grants)
    router.add_post(f"{PREFIX}/grants", create_grant)
    router.add_post(f"{PREFIX}/grants/revoke", revoke)
    router.add_post(f"{PREFIX}/grants/offboard", offboard)
    router.add_get(f"{PREFIX}/review", review)
    router.add_get(f"{PREFIX}/audit/report", report)
    router.add_post(f"{PREFIX}/break-glass/{{grant_id}}/acknowledge", acknowledge_break_glass)

"""Query strings of the admin API's GET endpoints, validated like request bodies.

An unknown or repeated parameter is refused (400/422), not ignored: `?practise=practice-a` must
not quietly list every practice's grants to a script that then revokes them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from proxy.admin_api.models import Duration, Practice, Subject
from proxy.admin_api.problems import ApiProblem, invalid

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["ListQuery", "ReportQuery", "ReviewQuery", "parse_query"]

_QUERY = ConfigDict(frozen=True, extra="forbid")
_Query = TypeVar("_Query", bound=BaseModel)


class ListQuery(BaseModel):
    """Filters of GET /api/v1/grants (as `phi-grants list`)."""

    model_config = _QUERY
    subject: Subject | None = Field(None, description="Only this person.")
    practice: Practice | None = Field(None, description="Only this practice.")
    active: bool = Field(default=False, description="Only grants active now.")
    expiring_within: Duration | None = Field(
        None, description="Only active grants that end within this time, e.g. 7d."
    )


class ReviewQuery(BaseModel):
    """Options of GET /api/v1/review (as `phi-grants review`)."""

    model_config = _QUERY
    practice: Practice | None = Field(None, description="Only grants of this practice.")
    expiring_within: Duration = Field("14d", description="Flag grants ending within this time.")
    unused_for: Duration = Field("30d", description="Flag grants unused for this time.")
    skip_usage: bool = Field(
        default=False, description="Do not read the audit trail: last use is 'not checked'."
    )


class ReportQuery(BaseModel):
    """Filters of GET /api/v1/audit/report (as `phi-audit report`); the subject is required."""

    model_config = _QUERY
    subject: Subject = Field(description="The person whose disclosures are listed.")
    practice: Practice | None = Field(None, description="Only records of this practice.")
    record: str | None = Field(
        None, min_length=1, max_length=1024, description="Only this record id."
    )
    since: datetime | None = Field(None, description="From this time (UTC unless a zone is given).")
    until: datetime | None = Field(None, description="Before this time.")


def parse_query(request: web.Request, model: type[_Query]) -> _Query:
    """The request's query string as `model`; ApiProblem (400/422) when it does not fit."""
    query = request.query
    repeated = sorted({name for name in query if len(query.getall(name)) > 1})
    if repeated:
        raise ApiProblem(
            400,
            "repeated-parameter",
            "a query parameter is repeated",
            f"{', '.join(repeated)} given more than once; give each parameter at most once",
        )
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise invalid(exc, "query") from None

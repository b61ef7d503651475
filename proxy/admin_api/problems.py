"""Errors of the admin API as RFC 9457 problem details, written for an operator at 3 a.m.

Each problem says what happened, what it means and what to do. `type` is a URN per kind, so a
script can branch on it; `request_id` matches the log line. Nothing from the request (tokens,
bodies) is ever echoed back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from pydantic import ValidationError
    from pydantic_core import ErrorDetails

__all__ = ["PROBLEM_JSON", "ApiProblem", "invalid", "problem_response"]

PROBLEM_JSON = "application/problem+json"
_TYPE = "urn:phi-proxy:admin-api:problem:"


class ApiProblem(Exception):
    """An answer other than success; `code` names its kind (the URN's last part)."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        **extra: Any,  # noqa: ANN401
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.extra = extra
        #: Headers the answer must carry (Allow on a 405).
        self.headers: dict[str, str] = {}


def problem_response(problem: ApiProblem, request_id: str) -> web.Response:
    """The problem+json answer for `problem`."""
    body = {
        "type": _TYPE + problem.code,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "request_id": request_id,
        **problem.extra,
    }
    response = web.Response(
        body=orjson.dumps(body), status=problem.status, content_type=PROBLEM_JSON
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(problem.headers)
    if problem.status == web.HTTPUnauthorized.status_code:
        response.headers["WWW-Authenticate"] = 'Bearer realm="phi-proxy admin API"'
    return response


def _where(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "the top level"


def invalid(exc: ValidationError, what: str) -> ApiProblem:
    """A 422 listing every problem of the request (`what`: body or query), values left out."""
    errors = [{"where": _where(e), "problem": e["msg"]} for e in exc.errors()]
    first = errors[0] if errors else {"where": "the top level", "problem": "invalid"}
    return ApiProblem(
        422,
        "invalid-request",
        "invalid request",
        f"the request {what} is invalid at {first['where']}: {first['problem']}; nothing was "
        "changed. See /openapi.json for the expected shape",
        errors=errors,
    )

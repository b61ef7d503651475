"""The admin API's OpenAPI 3.1 document, generated from the request and answer models.

Served at /openapi.json and committed as docs/admin-api.openapi.json; a test keeps the two
identical. Regenerate with `make openapi` (or `python -m proxy.admin_api.openapi >
docs/admin-api.openapi.json`).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import orjson
from pydantic.json_schema import models_json_schema

from proxy.admin_api.models import (
    BREAK_GLASS_ID_PATTERN,
    AcknowledgeBreakGlass,
    AddGrant,
    AdminIdentityOut,
    ChangeResult,
    GrantList,
    Offboard,
    Problem,
    ReportOut,
    ReviewOut,
    RevokeGrants,
    SignoffOut,
)
from proxy.admin_api.queries import ListQuery, ReportQuery, ReviewQuery

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["openapi_document", "render_openapi"]

_REF = "#/components/schemas/{model}"
_PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
_ERRORS = {
    "400": "The body is not JSON, or a query parameter is repeated.",
    "401": "No bearer token, or one that does not verify (expired, foreign issuer, bad "
    "signature, wrong audience).",
    "403": "A valid token without the admin role.",
    "413": "The body is larger than 64 KiB.",
    "422": "The request does not fit the schema, or the grant rules refuse it.",
    "500": "Unexpected failure; for a change: made, but not audited (the grants are listed).",
    "503": "The grant store or the audit trail cannot be used right now; nothing was changed.",
}


def _param_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: without the `null` branch of an optional field."""
    schema = {k: v for k, v in schema.items() if k not in {"title", "description", "default"}}
    options = schema.pop("anyOf", None)
    if options is not None:
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1:
            schema.update(real[0])
        else:  # pragma: no cover - every optional query field has one real type
            schema["anyOf"] = real
    return schema


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    params = []
    for name, prop in schema["properties"].items():
        param_schema = _param_schema(prop)
        if "default" in prop and prop["default"] is not None:
            param_schema["default"] = prop["default"]
        params.append(
            {
                "name": name,
                "in": "query",
                "required": name in required,
                "description": prop.get("description", ""),
                "schema": param_schema,
            }
        )
    return params


def _responses(ok: str, model: str, description: str, *codes: str) -> dict[str, Any]:
    responses: dict[str, Any] = {
        ok: {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        }
    }
    for code in ("400", "401", "403", *codes, "413", "422", "500", "503"):
        responses[code] = {
            "description": _ERRORS.get(code, "Nothing matched."),
            "content": _PROBLEM,
        }
    return responses


def _body(model: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
    }


def _paths() -> dict[str, Any]:
    return {
        "/api/v1/whoami": {
            "get": {
                "operationId": "whoami",
                "summary": "Who the API takes the caller to be (checks an IdP set-up).",
                "responses": _responses("200", "AdminIdentityOut", "The administrator."),
            }
        },
        "/api/v1/grants": {
            "get": {
                "operationId": "listGrants",
                "summary": "List grants (as `phi-grants list --json`).",
                "parameters": _query(ListQuery),
                "responses": _responses("200", "GrantList", "The grants selected."),
            },
            "post": {
                "operationId": "addGrant",
                "summary": "Add a grant (as `phi-grants add`); audited with the admin as actor.",
                "requestBody": _body("AddGrant"),
                "responses": _responses("201", "ChangeResult", "The grant added."),
            },
        },
        "/api/v1/grants/revoke": {
            "post": {
                "operationId": "revokeGrants",
                "summary": "Revoke one grant, or a person's grants at a practice (audited).",
                "requestBody": _body("RevokeGrants"),
                "responses": _responses("200", "ChangeResult", "The grants revoked.", "404"),
            }
        },
        "/api/v1/grants/offboard": {
            "post": {
                "operationId": "offboard",
                "summary": "Revoke every grant a person holds, in every practice (audited).",
                "requestBody": _body("Offboard"),
                "responses": _responses("200", "ChangeResult", "The grants revoked.", "404"),
            }
        },
        "/api/v1/review": {
            "get": {
                "operationId": "accessReview",
                "summary": "The access review (as `phi-grants review --json`).",
                "parameters": _query(ReviewQuery),
                "responses": _responses("200", "ReviewOut", "The review; read-only."),
            }
        },
        "/api/v1/break-glass/{grant_id}/acknowledge": {
            "post": {
                "operationId": "acknowledgeBreakGlass",
                "summary": "Sign off one break-glass use (final), as `phi-grants review "
                "--acknowledge`; audited with the admin as actor.",
                "parameters": [
                    {
                        "name": "grant_id",
                        "in": "path",
                        "required": True,
                        "description": "The use's grant id (bg_…), as the review lists it.",
                        "schema": {"type": "string", "pattern": BREAK_GLASS_ID_PATTERN},
                    }
                ],
                "requestBody": _body("AcknowledgeBreakGlass"),
                "responses": _responses("200", "SignoffOut", "The use, signed off.", "404"),
            }
        },
        "/api/v1/audit/report": {
            "get": {
                "operationId": "auditReport",
                "summary": "Who saw which records' which field classes (as `phi-audit report`).",
                "parameters": _query(ReportQuery),
                "responses": _responses("200", "ReportOut", "The verified report."),
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    models: list[tuple[type[BaseModel], Any]] = [
        *((m, "validation") for m in (AddGrant, RevokeGrants, Offboard, AcknowledgeBreakGlass)),
        *(
            (m, "serialization")
            for m in (ChangeResult, GrantList, ReviewOut, ReportOut, SignoffOut)
        ),
        (AdminIdentityOut, "serialization"),
        (Problem, "serialization"),
    ]
    _, schemas = models_json_schema(models, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "phi-proxy admin API",
            "version": "1",
            "description": "Grants, the access review and the audit report, for administrators "
            "whose token carries the admin role (docs/admin-api.md). Every change is audited "
            "with the administrator's subject as actor.",
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "security": [{"adminBearer": []}],
        "paths": _paths(),
        "components": {
            "schemas": schemas["$defs"],
            "securitySchemes": {
                "adminBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A token from the configured identity provider whose "
                    "admin_api.role_claim holds admin_api.role.",
                }
            },
        },
    }


def render_openapi() -> bytes:
    """The document as served and committed: indented JSON and a final newline."""
    return orjson.dumps(openapi_document(), option=orjson.OPT_INDENT_2) + b"\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.buffer.write(render_openapi())

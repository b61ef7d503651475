"""The SCIM listener's aiohttp application: bearer check, errors, and the resource endpoints.

Every request must carry ``Authorization: Bearer <scim secret>`` (401 otherwise, before any
body is read). Errors are SCIM Error documents (RFC 7644 §3.12). The grant store and the SCIM
directory are opened in the app's cleanup context, like the proxy's own resources.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import ValidationError
from scim2_models import (
    InvalidSyntaxException,
    NotFoundException,
    SCIMException,
    UnauthorizedException,
    UniquenessException,
)

from proxy.audit.errors import AuditError
from proxy.grants.errors import GrantError, GrantStoreUnavailable
from proxy.grants.store import open_grant_store
from proxy.logs import ALERT_LOGGER
from proxy.scim import groups, users
from proxy.scim.directory import Directory
from proxy.scim.discovery import resource_types, schemas, service_provider_config
from proxy.scim.provisioning import ACTOR, Provisioner
from proxy.scim.resources import (
    BASE,
    PROVISIONER,
    REQUEST_ID,
    Query,
    list_document,
    scim_response,
)
from proxy.scim.secret import load_secret

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from proxy.settings import Settings

__all__ = ["MAX_BODY", "build_scim_app"]

#: The largest SCIM request body accepted (a group PUT with thousands of members fits).
MAX_BODY = 4 * 1024 * 1024

_log = logging.getLogger("phi_proxy.scim")
_alerts = logging.getLogger(ALERT_LOGGER)


def _error(exc: SCIMException) -> web.Response:
    response = scim_response(exc.to_error().model_dump(), status=exc.status)
    if exc.status == web.HTTPUnauthorized.status_code:
        response.headers["WWW-Authenticate"] = 'Bearer realm="phi-proxy SCIM"'
    return response


def _middlewares(settings: Settings) -> list[Any]:
    secret = load_secret(settings.scim)  # a missing, short or loose secret stops the start

    @web.middleware
    async def authenticate_and_map_errors(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request_id = f"scim-{uuid.uuid4().hex[:16]}"
        request[REQUEST_ID] = request_id
        try:
            if not secret.matches(request.headers.get("Authorization")):
                _log.warning(
                    "scim request refused: no valid bearer secret",
                    extra={"fields": {"peer": request.remote, "path": request.path}},
                )
                raise UnauthorizedException(detail="a valid bearer secret is required")
            response = await handler(request)
        except SCIMException as exc:
            response = _error(exc)
        except ValidationError as exc:
            response = _error(InvalidSyntaxException(detail=_validation_detail(exc)))
        except GrantError as exc:
            response = _error(SCIMException(detail=str(exc)))
        except sqlite3.IntegrityError:  # two writes raced for one userName or displayName
            response = _error(UniquenessException(detail="another resource has this name"))
        except (GrantStoreUnavailable, sqlite3.Error) as exc:
            _log.error(
                "scim request failed: storage unavailable", extra={"fields": {"error": str(exc)}}
            )
            failure = SCIMException(
                detail="the grant store or SCIM directory cannot be used right now; the change "
                "may be incomplete: send it again (identity providers retry)"
            )
            failure.status = web.HTTPServiceUnavailable.status_code
            response = _error(failure)
        except web.HTTPNotFound:
            response = _error(NotFoundException(detail=f"no SCIM endpoint at {request.path}"))
        response.headers["X-Request-Id"] = request_id
        return response

    return [authenticate_and_map_errors]


def _validation_detail(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid SCIM document"
    where = ".".join(str(part) for part in errors[0]["loc"])
    return f"invalid SCIM document at {where or 'top level'}: {errors[0]['msg']}"


def _recorder(
    config_path: Path | None,
) -> Callable[[str, dict[str, Any], datetime], Awaitable[None]]:
    """Audit a SCIM change exactly as phi-grants does, on a worker thread."""
    from proxy.audit.factory import record_change  # noqa: PLC0415 - only for changes

    async def record(action: str, details: dict[str, Any], now: datetime) -> None:
        if config_path is None:  # pragma: no cover - serve always has the config path
            return
        try:
            await asyncio.to_thread(
                record_change,
                config_path,
                "grant_change",
                action,
                actor=ACTOR,
                details=details,
                now=now,
            )
        except AuditError as exc:
            _alerts.error(
                "scim_change_not_audited",
                extra={"fields": {"error": str(exc), "scim_request": details.get("scim_request")}},
            )

    return record


def build_scim_app(
    settings: Settings,
    *,
    config_path: Path | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> web.Application:
    """The SCIM application; raises ScimSecretError at once when the secret is unusable.

    `clock` gives the time grants are created and renewed at (tests pass their own).
    """
    app = web.Application(middlewares=_middlewares(settings), client_max_size=MAX_BODY)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        store = open_grant_store(settings.grants, application_name="phi-proxy-scim")
        try:
            directory = Directory(settings.scim.directory)
            app[PROVISIONER] = Provisioner(
                settings.scim, store, directory, _recorder(config_path), clock
            )
            yield
        finally:
            await store.close()

    app.cleanup_ctx.append(resources)

    async def spc(_request: web.Request) -> web.Response:
        return scim_response(service_provider_config())

    async def types(request: web.Request) -> web.Response:
        return _found(resource_types(request.match_info.get("id")), "resource type")

    async def schema_docs(request: web.Request) -> web.Response:
        return _found(schemas(request.match_info.get("id")), "schema")

    app.router.add_get(f"{BASE}/ServiceProviderConfig", spc)
    app.router.add_get(f"{BASE}/ResourceTypes", types)
    app.router.add_get(f"{BASE}/ResourceTypes/{{id}}", types)
    app.router.add_get(f"{BASE}/Schemas", schema_docs)
    app.router.add_get(f"{BASE}/Schemas/{{id}}", schema_docs)
    users.add_routes(app.router)
    groups.add_routes(app.router)
    app.router.add_post(f"{BASE}/.search", _search_all)
    return app


async def _search_all(request: web.Request) -> web.Response:
    """POST /.search: users and groups together; a filter names userName or displayName."""
    query = await Query.from_body(request)
    found = query.equality("userName", "displayName")
    documents = []
    if found is None or found[0] == "userName":
        documents += await users.user_documents(request, query)
    if found is None or found[0] == "displayName":
        documents += await groups.group_documents(request, query)
    return scim_response(list_document(query, documents))


def _found(document: dict[str, Any] | None, what: str) -> web.Response:
    if document is None:
        raise NotFoundException(detail=f"no such {what}")
    return scim_response(document)

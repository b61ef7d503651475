"""What every SCIM endpoint shares: base path, media type, request bodies, paging, filters.

Each resource supports one filter form, ``ATTRIBUTE eq "value"`` (userName for users,
displayName for groups): what Okta, Entra ID and Keycloak send to find an existing resource.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from scim2_models import InvalidFilterException, InvalidSyntaxException, InvalidValueException

from proxy.scim.discovery import MAX_RESULTS
from proxy.scim.provisioning import Provisioner

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BASE",
    "PROVISIONER",
    "REQUEST_ID",
    "SCIM_JSON",
    "equality_filter",
    "list_document",
    "location",
    "page",
    "provisioner",
    "read_document",
    "scim_response",
]

#: Where the SCIM endpoints live: the IdP's "SCIM base URL" is http(s)://HOST:PORT/scim/v2.
BASE = "/scim/v2"
SCIM_JSON = "application/scim+json"
PROVISIONER = web.AppKey("scim_provisioner", Provisioner)
REQUEST_ID = web.RequestKey("scim_request_id", str)
_LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
_EQ = re.compile(r'^\s*([A-Za-z][A-Za-z0-9._:-]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)


def provisioner(request: web.Request) -> Provisioner:
    """The app's provisioner (opened in the cleanup context)."""
    return request.app[PROVISIONER]


def request_id(request: web.Request) -> str:
    """The id this request is audited under (also sent back as X-Request-Id)."""
    value: str = request.get(REQUEST_ID, "scim-unknown")
    return value


def scim_response(document: dict[str, Any], *, status: int = 200) -> web.Response:
    """A SCIM JSON answer."""
    return web.Response(body=orjson.dumps(document), status=status, content_type=SCIM_JSON)


async def read_document(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object (400 invalidSyntax otherwise)."""
    try:
        document = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise InvalidSyntaxException(detail="the request body is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidSyntaxException(detail="the request body must be a JSON object")
    return document


def location(request: web.Request, kind: str, resource_id: str) -> str:
    """The resource's URL, as meta.location carries it."""
    return f"{request.scheme}://{request.host}{BASE}/{kind}/{resource_id}"


def equality_filter(request: web.Request, attribute: str) -> str | None:
    """The value of ``filter=ATTRIBUTE eq "value"``; None without a filter (400 otherwise)."""
    text = request.query.get("filter")
    if text is None:
        return None
    match = _EQ.match(text)
    if match is None or match.group(1).lower() != attribute.lower():
        raise InvalidFilterException(
            detail=f'only the filter {attribute} eq "value" is supported here'
        )
    return orjson.loads(f'"{match.group(2)}"')  # type: ignore[no-any-return]


def _number(request: web.Request, name: str, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise InvalidValueException(detail=f"{name} must be an integer") from None


def page(request: web.Request) -> tuple[int, int]:
    """(startIndex, count) of a list request: 1-based, count capped at MAX_RESULTS."""
    start = max(1, _number(request, "startIndex", 1))
    count = min(max(0, _number(request, "count", MAX_RESULTS)), MAX_RESULTS)
    return start, count


def list_document(request: web.Request, resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ListResponse of the requested page of `resources`."""
    start, count = page(request)
    chosen = list(resources[start - 1 : start - 1 + count])
    return {
        "schemas": [_LIST],
        "totalResults": len(resources),
        "startIndex": start,
        "itemsPerPage": len(chosen),
        "Resources": chosen,
    }

"""What every SCIM endpoint shares: base path, media type, request bodies, queries, answers.

Each resource supports one filter form, ``ATTRIBUTE eq "value"`` (userName for users,
displayName for groups): what Okta, Entra ID and Keycloak send to find an existing resource.
A query comes from the URL (GET) or a SearchRequest body (POST …/.search); `attributes` and
`excludedAttributes` shape every answer, through scim2-models' own serializer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from scim2_models import (
    Context,
    InvalidFilterException,
    InvalidSyntaxException,
    InvalidValueException,
    ResponseParameters,
    SearchRequest,
)

from proxy.scim.discovery import MAX_RESULTS
from proxy.scim.provisioning import Provisioner

if TYPE_CHECKING:
    from collections.abc import Sequence

    from scim2_models import Resource

__all__ = [
    "BASE",
    "PROVISIONER",
    "REQUEST_ID",
    "SCIM_JSON",
    "Query",
    "list_document",
    "location",
    "provisioner",
    "read_document",
    "request_id",
    "scim_response",
    "shaped",
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


def _number(value: object, name: str, default: int) -> int:
    if value is None:
        return default
    try:
        return int(str(value))
    except ValueError:
        raise InvalidValueException(detail=f"{name} must be an integer") from None


@dataclass(frozen=True, slots=True)
class Query:
    """A list or search request: filter, paging and the attributes to return."""

    filter: str | None
    start: int
    count: int
    attributes: str | None
    excluded: str | None

    @classmethod
    def from_url(cls, request: web.Request) -> Query:
        """The query of a GET (filter, startIndex, count, attributes, excludedAttributes)."""
        q = request.query
        return cls._bounded(
            q.get("filter"),
            _number(q.get("startIndex"), "startIndex", 1),
            _number(q.get("count"), "count", MAX_RESULTS),
            q.get("attributes"),
            q.get("excludedAttributes"),
        )

    @classmethod
    async def from_body(cls, request: web.Request) -> Query:
        """The query of a POST …/.search (a SearchRequest document)."""
        search: SearchRequest[Any] = SearchRequest.model_validate(
            await read_document(request), scim_ctx=Context.SEARCH_REQUEST
        )
        return cls._bounded(
            None if search.filter is None else str(search.filter),
            search.start_index or 1,
            MAX_RESULTS if search.count is None else search.count,
            ",".join(str(a) for a in search.attributes or ()) or None,
            ",".join(str(a) for a in search.excluded_attributes or ()) or None,
        )

    @classmethod
    def _bounded(
        cls, filter_text: str | None, start: int, count: int, attrs: str | None, excl: str | None
    ) -> Query:
        return cls(filter_text, max(1, start), min(max(0, count), MAX_RESULTS), attrs, excl)

    def equality(self, *attributes: str) -> tuple[str, str] | None:
        """(attribute, value) of ``filter=ATTRIBUTE eq "value"``; None without a filter."""
        if self.filter is None:
            return None
        match = _EQ.match(self.filter)
        names = {a.lower(): a for a in attributes}
        if match is None or match.group(1).lower() not in names:
            wanted = " or ".join(f'{a} eq "value"' for a in attributes)
            raise InvalidFilterException(detail=f"only the filter {wanted} is supported here")
        value: str = orjson.loads(f'"{match.group(2)}"')
        return names[match.group(1).lower()], value

    def shape(self, model: type[Resource[Any]], document: dict[str, Any]) -> dict[str, Any]:
        """`document` with only the attributes this query asks for."""
        return shaped(model, document, self.attributes, self.excluded)


def shaped(
    model: type[Resource[Any]],
    document: dict[str, Any],
    attributes: str | None,
    excluded: str | None,
) -> dict[str, Any]:
    """`document` through the model's serializer, keeping what attributes/excluded select."""
    if attributes is None and excluded is None:
        return document
    parameters = ResponseParameters[model].model_validate(  # type: ignore[valid-type]
        {"attributes": attributes, "excludedAttributes": excluded}
    )
    resource = model.model_validate(document, scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    result: dict[str, Any] = resource.model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=parameters
    )
    return result


def list_document(query: Query, resources: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A ListResponse of the requested page of `resources` (already shaped)."""
    chosen = list(resources[query.start - 1 : query.start - 1 + query.count])
    return {
        "schemas": [_LIST],
        "totalResults": len(resources),
        "startIndex": query.start,
        "itemsPerPage": len(chosen),
        "Resources": chosen,
    }

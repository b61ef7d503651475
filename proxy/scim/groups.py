"""/Groups: the IdP's groups and their members; a mapped group's members hold its grant.

Groups named under scim.groups map to a grant (practice, classes, ttl): a member added gets it,
a member removed (PATCH remove, a PUT without it, the group deleted or renamed) loses the grants
that group gave. Other groups are stored and answered like any group, but grant nothing;
check-config lists them so an operator can see a group the IdP sends that no mapping names.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from scim2_models import (
    Context,
    Group,
    InvalidValueException,
    NotFoundException,
    PatchOp,
    UniquenessException,
)

from proxy.scim.directory import ScimGroupRow
from proxy.scim.provisioning import group_id_for, scim_time
from proxy.scim.resources import (
    BASE,
    Query,
    list_document,
    location,
    provisioner,
    read_document,
    request_id,
    scim_response,
    shaped,
)

__all__ = ["add_routes", "group_documents"]

_log = logging.getLogger("phi_proxy.scim")
_GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
_OWN = ("id", "meta", "displayName", "members")


async def _render(request: web.Request, group: ScimGroupRow) -> dict[str, Any]:
    document: dict[str, Any] = orjson.loads(group.document)
    document.setdefault("schemas", [_GROUP_SCHEMA])
    document.update(id=group.id, displayName=group.display_name)
    members = await provisioner(request).directory.members(group.id)
    if members:
        document["members"] = list(members.values())
    document["meta"] = {
        "resourceType": "Group",
        "created": group.created,
        "lastModified": group.modified,
        "location": location(request, "Groups", group.id),
    }
    return document


async def _known(request: web.Request) -> ScimGroupRow:
    group = await provisioner(request).directory.group(request.match_info["id"])
    if group is None:
        raise NotFoundException(detail="no such group")
    return group


async def group_documents(request: web.Request, query: Query) -> list[dict[str, Any]]:
    """The groups a query selects (filter: displayName eq), shaped as it asks."""
    found = query.equality("displayName")
    groups = await provisioner(request).directory.groups(None if found is None else found[1])
    return [query.shape(Group, await _render(request, group)) for group in groups]


async def _answer(request: web.Request, group: ScimGroupRow, *, status: int = 200) -> web.Response:
    q = request.query
    document = shaped(
        Group, await _render(request, group), q.get("attributes"), q.get("excludedAttributes")
    )
    return scim_response(document, status=status)


async def _list(request: web.Request) -> web.Response:
    query = Query.from_url(request)
    return scim_response(list_document(query, await group_documents(request, query)))


async def _search(request: web.Request) -> web.Response:
    query = await Query.from_body(request)
    return scim_response(list_document(query, await group_documents(request, query)))


async def _get(request: web.Request) -> web.Response:
    return await _answer(request, await _known(request))


def _members(model: Group) -> dict[str, dict[str, Any]]:
    """The members as sent, by value (users, or nested groups, which grant nothing)."""
    wanted: dict[str, dict[str, Any]] = {}
    for member in model.members or ():
        if not member.value:
            raise InvalidValueException(detail="every member needs a value (the member's id)")
        wanted[member.value] = member.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    return wanted


async def _save(request: web.Request, model: Group, existing: ScimGroupRow | None) -> ScimGroupRow:
    """Store the group and make its members `model.members`, granting and revoking to match."""
    prov = provisioner(request)
    name = model.display_name
    if not name:
        raise InvalidValueException(detail="displayName is required")
    wanted = _members(model)
    group_id = existing.id if existing is not None else group_id_for(name)
    if existing is None and await prov.directory.group(group_id) is not None:
        raise UniquenessException(detail="a group with this displayName exists")
    for other in await prov.directory.groups(name):
        if other.id != group_id:
            raise UniquenessException(detail="another group has this displayName")
    rid = request_id(request)
    if existing is not None and existing.display_name != name:  # renamed: another mapping
        await prov.set_members(existing, {}, rid)
    mapped = name in prov.settings.groups
    if not mapped:
        _log.info(
            "scim group not mapped by scim.groups: no grants", extra={"fields": {"group": name}}
        )
    now = scim_time(prov.now())
    stored = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    group = ScimGroupRow(
        id=group_id,
        display_name=name,
        mapped=mapped,
        created=existing.created if existing is not None else now,
        modified=now,
        document=orjson.dumps({k: v for k, v in stored.items() if k not in _OWN}).decode(),
    )
    await prov.directory.put_group(group)
    await prov.set_members(group, wanted, rid)
    return group


async def _create(request: web.Request) -> web.Response:
    model = Group.model_validate(
        await read_document(request), scim_ctx=Context.RESOURCE_CREATION_REQUEST
    )
    group = await _save(request, model, None)
    response = await _answer(request, group, status=201)
    response.headers["Location"] = location(request, "Groups", group.id)
    return response


async def _replace(request: web.Request) -> web.Response:
    existing = await _known(request)
    model = Group.model_validate(
        await read_document(request), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST
    )
    return await _answer(request, await _save(request, model, existing))


async def _patch(request: web.Request) -> web.Response:
    existing = await _known(request)
    operations = PatchOp[Group].model_validate(
        await read_document(request), scim_ctx=Context.RESOURCE_PATCH_REQUEST
    )
    model = Group.model_validate(
        await _render(request, existing), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST
    )
    operations.patch(model)
    return await _answer(request, await _save(request, model, existing))


async def _delete(request: web.Request) -> web.Response:
    prov = provisioner(request)
    group = await _known(request)
    await prov.set_members(group, {}, request_id(request))
    await prov.directory.delete_group(group.id)
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the /Groups endpoints."""
    router.add_get(f"{BASE}/Groups", _list)
    router.add_post(f"{BASE}/Groups", _create)
    router.add_post(f"{BASE}/Groups/.search", _search)
    router.add_get(f"{BASE}/Groups/{{id}}", _get)
    router.add_put(f"{BASE}/Groups/{{id}}", _replace)
    router.add_patch(f"{BASE}/Groups/{{id}}", _patch)
    router.add_delete(f"{BASE}/Groups/{{id}}", _delete)

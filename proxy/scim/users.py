"""/Users: create, read, filter by userName, replace, patch and delete SCIM users.

A user's id is its `sub` in base64url at creation (proxy.scim.directory). Any write that leaves
a user inactive offboards its subject; a write that makes an inactive user active gives back its
mapped groups' grants. When the attribute that names the subject (scim.subject_from) changes,
the old subject is offboarded and the new one gets the group grants: to the proxy they are two
people. A PUT, PATCH or DELETE naming an id this directory does not know still offboards the
subject the id names, then answers 404: deprovisioning does not wait for the bookkeeping file.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from scim2_models import (
    Context,
    InvalidValueException,
    NotFoundException,
    PatchOp,
    UniquenessException,
    User,
)

from proxy.scim.directory import ScimUser, unmapped_user_id
from proxy.scim.provisioning import scim_time
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

__all__ = ["add_routes", "render_user", "user_documents"]

_log = logging.getLogger("phi_proxy.scim")
_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
#: PATCH documents for users with any (or no) schema extension.
_USER_PATCH = PatchOp[User]  # type: ignore[type-arg]
#: Attributes kept in their own columns, or never stored (password: returned "never").
_OWN = ("id", "meta", "userName", "externalId", "active", "password", "groups")


def render_user(request: web.Request, user: ScimUser) -> dict[str, Any]:
    """The SCIM representation of a stored user."""
    document: dict[str, Any] = orjson.loads(user.document)
    document.setdefault("schemas", [_USER_SCHEMA])
    document.update(id=user.id, userName=user.user_name)
    if user.active is not None:
        document["active"] = user.active
    if user.external_id is not None:
        document["externalId"] = user.external_id
    document["meta"] = {
        "resourceType": "User",
        "created": user.created,
        "lastModified": user.modified,
        "location": location(request, "Users", user.id),
    }
    return document


async def user_documents(request: web.Request, query: Query) -> list[dict[str, Any]]:
    """The users a query selects (filter: userName eq), shaped as it asks."""
    found = query.equality("userName")
    users = await provisioner(request).directory.users(None if found is None else found[1])
    return [query.shape(User, render_user(request, user)) for user in users]


def _answer(request: web.Request, user: ScimUser, *, status: int = 200) -> web.Response:
    q = request.query
    document = shaped(
        User, render_user(request, user), q.get("attributes"), q.get("excludedAttributes")
    )
    return scim_response(document, status=status)


async def _list(request: web.Request) -> web.Response:
    query = Query.from_url(request)
    return scim_response(list_document(query, await user_documents(request, query)))


async def _search(request: web.Request) -> web.Response:
    query = await Query.from_body(request)
    return scim_response(list_document(query, await user_documents(request, query)))


async def _get(request: web.Request) -> web.Response:
    user = await provisioner(request).directory.user(request.match_info["id"])
    if user is None:
        raise NotFoundException(detail="no such user")
    return _answer(request, user)


async def _id_for(request: web.Request, sub: str | None, existing: ScimUser | None) -> str:
    """The id of the user being written: its own, from its `sub`, or a fresh unmapped one."""
    prov = provisioner(request)
    attribute = prov.settings.subject_from
    if sub is not None:
        holder = await prov.directory.user_with_sub(sub)
        if holder is not None and (existing is None or holder.id != existing.id):
            raise UniquenessException(detail=f"another user has this {attribute}")
    if existing is not None:
        return existing.id
    if sub is None:
        user_id = unmapped_user_id()
        _log.warning(
            "scim user without a subject attribute: it maps to no subject and gets no grant",
            extra={"fields": {"missing": attribute, "scim_id": user_id}},
        )
        return user_id
    user_id = prov.user_id(sub)
    if await prov.directory.user(user_id) is not None:  # a user renamed away from this sub
        user_id = unmapped_user_id()
    return user_id


async def _save(request: web.Request, model: User[Any], existing: ScimUser | None) -> ScimUser:
    """Store `model` (a new user when `existing` is None) and apply what its `active` means."""
    prov = provisioner(request)
    attribute = prov.settings.subject_from
    if not model.user_name:
        raise InvalidValueException(detail="userName is required")
    sub = prov.sub_for(model.user_name, model.external_id) or None
    if sub is not None and not prov.valid_sub(sub):
        raise InvalidValueException(detail=f"{attribute} is not a valid `sub` (printable text)")
    user_id = await _id_for(request, sub, existing)
    for other in await prov.directory.users(model.user_name):
        if other.id != user_id:
            raise UniquenessException(detail="another user has this userName")
    now = scim_time(prov.now())
    stored = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    user = ScimUser(
        id=user_id,
        sub=sub,
        user_name=model.user_name,
        external_id=model.external_id,
        active=model.active,
        created=existing.created if existing is not None else now,
        modified=now,
        document=orjson.dumps({k: v for k, v in stored.items() if k not in _OWN}).decode(),
    )
    await prov.directory.put_user(user)
    rid = request_id(request)
    renamed = existing is not None and existing.sub != sub
    if renamed and existing is not None:
        await prov.offboard_sub(existing.sub, rid, f"{prov.settings.subject_from} changed")
    if user.active is False:
        await prov.offboard(user.id, rid, "user deactivated (active=false)")
    elif existing is None or existing.active is False or renamed:
        await prov.grant_groups(user, rid)
    return user


async def _create(request: web.Request) -> web.Response:
    document = await read_document(request)
    model: User[Any] = User.model_validate(document, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    user = await _save(request, model, None)
    response = _answer(request, user, status=201)
    response.headers["Location"] = location(request, "Users", user.id)
    return response


async def _known_or_offboard(request: web.Request, why: str) -> ScimUser:
    """The stored user the path names; an unknown id is offboarded anyway, then 404."""
    prov = provisioner(request)
    user_id = request.match_info["id"]
    user = await prov.directory.user(user_id)
    if user is None:
        await prov.offboard(user_id, request_id(request), f"{why} of a user unknown here")
        raise NotFoundException(detail="no such user")
    return user


async def _replace(request: web.Request) -> web.Response:
    existing = await _known_or_offboard(request, "PUT")
    document = await read_document(request)
    model: User[Any] = User.model_validate(document, scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST)
    return _answer(request, await _save(request, model, existing))


async def _patch(request: web.Request) -> web.Response:
    existing = await _known_or_offboard(request, "PATCH")
    operations = _USER_PATCH.model_validate(
        await read_document(request), scim_ctx=Context.RESOURCE_PATCH_REQUEST
    )
    model: User[Any] = User.model_validate(
        render_user(request, existing), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST
    )
    operations.patch(model)
    return _answer(request, await _save(request, model, existing))


async def _delete(request: web.Request) -> web.Response:
    prov = provisioner(request)
    user_id = request.match_info["id"]
    await prov.offboard(user_id, request_id(request), "user deleted")
    if not await prov.directory.delete_user(user_id):
        raise NotFoundException(detail="no such user")
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the /Users endpoints."""
    router.add_get(f"{BASE}/Users", _list)
    router.add_post(f"{BASE}/Users", _create)
    router.add_post(f"{BASE}/Users/.search", _search)
    router.add_get(f"{BASE}/Users/{{id}}", _get)
    router.add_put(f"{BASE}/Users/{{id}}", _replace)
    router.add_patch(f"{BASE}/Users/{{id}}", _patch)
    router.add_delete(f"{BASE}/Users/{{id}}", _delete)

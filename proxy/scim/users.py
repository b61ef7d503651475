"""/Users: create, read, filter by userName, replace, patch and delete SCIM users.

A user's id is its `sub` in base64url (proxy.scim.directory), so the attribute that names the
subject (scim.subject_from) cannot change on PUT or PATCH: a new `sub` is another person to the
proxy, whom the IdP must create. Any write that leaves a user inactive offboards its subject;
a write that makes an inactive user active gives back its mapped groups' grants. A PUT, PATCH or
DELETE naming an id this directory does not know still offboards the subject the id names,
then answers 404: deprovisioning never depends on the bookkeeping file.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from scim2_models import (
    Context,
    InvalidValueException,
    MutabilityException,
    NotFoundException,
    PatchOp,
    UniquenessException,
    User,
)

from proxy.scim.directory import ScimUser
from proxy.scim.provisioning import scim_time
from proxy.scim.resources import (
    BASE,
    equality_filter,
    list_document,
    location,
    provisioner,
    read_document,
    request_id,
    scim_response,
)

__all__ = ["add_routes", "render_user"]

_USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
#: Attributes kept in their own columns, or never stored (password: returned "never").
#: PATCH documents for users with any (or no) schema extension.
_USER_PATCH = PatchOp[User]  # type: ignore[type-arg]
_OWN = ("id", "meta", "userName", "externalId", "active", "password", "groups")


def render_user(request: web.Request, user: ScimUser) -> dict[str, Any]:
    """The SCIM representation of a stored user."""
    document: dict[str, Any] = orjson.loads(user.document)
    document.setdefault("schemas", [_USER_SCHEMA])
    document.update(id=user.id, userName=user.user_name, active=user.active)
    if user.external_id is not None:
        document["externalId"] = user.external_id
    document["meta"] = {
        "resourceType": "User",
        "created": user.created,
        "lastModified": user.modified,
        "location": location(request, "Users", user.id),
    }
    return document


async def _list(request: web.Request) -> web.Response:
    name = equality_filter(request, "userName")
    found = await provisioner(request).directory.users(name)
    return scim_response(list_document(request, [render_user(request, u) for u in found]))


async def _get(request: web.Request) -> web.Response:
    user = await provisioner(request).directory.user(request.match_info["id"])
    if user is None:
        raise NotFoundException(detail="no such user")
    return scim_response(render_user(request, user))


async def _save(
    request: web.Request, model: User[Any], existing: ScimUser | None
) -> tuple[ScimUser, dict[str, Any]]:
    """Store `model` (a new user when `existing` is None) and apply what its `active` means."""
    prov = provisioner(request)
    if not model.user_name:
        raise InvalidValueException(detail="userName is required")
    sub = prov.sub_for(model.user_name, model.external_id)
    if not sub:
        raise InvalidValueException(
            detail=f"{prov.settings.subject_from} is required: scim.subject_from says it holds "
            "the `sub` of the user's tokens"
        )
    user_id = prov.user_id(sub)
    if existing is not None and existing.id != user_id:
        raise MutabilityException(
            detail=f"{prov.settings.subject_from} names the user's subject and cannot change; "
            "create a new user for the new identity"
        )
    if existing is None and await prov.directory.user(user_id) is not None:
        raise UniquenessException(detail=f"a user with this {prov.settings.subject_from} exists")
    if prov.subject_of(user_id) is None:
        raise InvalidValueException(detail=f"{prov.settings.subject_from} is not a valid `sub`")
    for other in await prov.directory.users(model.user_name):
        if other.id != user_id:
            raise UniquenessException(detail="another user has this userName")
    now = scim_time(prov.now())
    stored = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    user = ScimUser(
        id=user_id,
        user_name=model.user_name,
        external_id=model.external_id,
        active=model.active is not False,
        created=existing.created if existing is not None else now,
        modified=now,
        document=orjson.dumps({k: v for k, v in stored.items() if k not in _OWN}).decode(),
    )
    await prov.directory.put_user(user)
    rid = request_id(request)
    if not user.active:
        await prov.offboard(user.id, rid, "user deactivated (active=false)")
    elif existing is None or not existing.active:
        await prov.grant_groups(user, rid)
    return user, render_user(request, user)


async def _create(request: web.Request) -> web.Response:
    document = await read_document(request)
    model: User[Any] = User.model_validate(document, scim_ctx=Context.RESOURCE_CREATION_REQUEST)
    user, rendered = await _save(request, model, None)
    response = scim_response(rendered, status=201)
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
    _user, rendered = await _save(request, model, existing)
    return scim_response(rendered)


async def _patch(request: web.Request) -> web.Response:
    existing = await _known_or_offboard(request, "PATCH")
    operations = _USER_PATCH.model_validate(
        await read_document(request), scim_ctx=Context.RESOURCE_PATCH_REQUEST
    )
    model: User[Any] = User.model_validate(
        render_user(request, existing), scim_ctx=Context.RESOURCE_REPLACEMENT_REQUEST
    )
    operations.patch(model)
    _user, rendered = await _save(request, model, existing)
    return scim_response(rendered)


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
    router.add_get(f"{BASE}/Users/{{id}}", _get)
    router.add_put(f"{BASE}/Users/{{id}}", _replace)
    router.add_patch(f"{BASE}/Users/{{id}}", _patch)
    router.add_delete(f"{BASE}/Users/{{id}}", _delete)

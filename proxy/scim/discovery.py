"""The SCIM discovery documents (RFC 7644 §4): what this service provider supports.

Built from scim2-models' own resource models, so the schemas served are the ones requests are
validated against. The claims here are what scim2-tester checks: PATCH and filtering (userName
and displayName equality) yes; bulk, sort, ETags and password changes no.
"""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    Group,
    ListResponse,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
    User,
)

__all__ = ["MAX_RESULTS", "resource_types", "schemas", "service_provider_config"]

#: The most resources one list answer carries.
MAX_RESULTS = 200
_QUERY = Context.RESOURCE_QUERY_RESPONSE


def service_provider_config() -> dict[str, Any]:
    """The /ServiceProviderConfig document."""
    config = ServiceProviderConfig(
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="Bearer secret",
                description="The shared secret of scim.secret_file / scim.secret_env, sent as "
                "Authorization: Bearer <secret>",
                primary=True,
            )
        ],
    )
    dumped: dict[str, Any] = config.model_dump(scim_ctx=_QUERY)
    return dumped


def _types() -> list[ResourceType]:
    return [ResourceType.from_resource(User), ResourceType.from_resource(Group)]


def _schemas() -> list[Schema]:
    return [User.to_schema(), Group.to_schema()]


def resource_types(type_id: str | None = None) -> dict[str, Any] | None:
    """The /ResourceTypes list, or one type by id (None when there is no such type)."""
    types = _types()
    if type_id is not None:
        found = [t for t in types if t.id == type_id]
        return found[0].model_dump(scim_ctx=_QUERY) if found else None
    listing = ListResponse[ResourceType](
        total_results=len(types), start_index=1, items_per_page=len(types), resources=types
    )
    dumped: dict[str, Any] = listing.model_dump(scim_ctx=_QUERY)
    return dumped


def schemas(schema_id: str | None = None) -> dict[str, Any] | None:
    """The /Schemas list, or one schema by its URN (None when there is no such schema)."""
    found = _schemas()
    if schema_id is not None:
        match = [s for s in found if s.id == schema_id]
        return match[0].model_dump(scim_ctx=_QUERY) if match else None
    listing = ListResponse[Schema](
        total_results=len(found), start_index=1, items_per_page=len(found), resources=found
    )
    dumped: dict[str, Any] = listing.model_dump(scim_ctx=_QUERY)
    return dumped

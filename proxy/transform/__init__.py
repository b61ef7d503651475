"""Field policy and body transforms: decrypt-or-mask on the way out, encrypt on the way in.

Pure functions over bytes, compiled once from the `fields:` and `write_routes:` settings:

    policy = FieldPolicy.compile(field_settings)           # at startup
    routes = RouteTable.compile(write_routes_settings)     # at startup
    ctx = RevealContext(policy, keyring, access, route_practice, TransformStats())
    if policy.may_need_transform(body, content_type):
        body = transform_response(body, content_type, ctx)  # UnsafeBody → 502, no content
    body = encrypt_request(body, content_type, routes.match_route(method, path),
                           SealContext(policy, keyring, stats))  # RequestRejected → its status
"""

from proxy.transform.errors import RequestRejected, UnsafeBody
from proxy.transform.policy import FieldPolicy
from proxy.transform.request import SealContext, encrypt_request
from proxy.transform.response import transform_response
from proxy.transform.reveal import AccessPolicy, RevealContext
from proxy.transform.routes import RouteMatch, RouteTable
from proxy.transform.settings import FieldSettings, WriteRoutesSettings
from proxy.transform.stats import IntegrityEvent, TransformStats

__all__ = [
    "AccessPolicy",
    "FieldPolicy",
    "FieldSettings",
    "IntegrityEvent",
    "RequestRejected",
    "RevealContext",
    "RouteMatch",
    "RouteTable",
    "SealContext",
    "TransformStats",
    "UnsafeBody",
    "WriteRoutesSettings",
    "encrypt_request",
    "transform_response",
]

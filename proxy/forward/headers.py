"""Header hygiene in both directions.

Everything a client sends is attacker-controlled. Before a request reaches the portal we remove
hop-by-hop headers (and every header the client names in `Connection`, so a client cannot ask
us to drop a header we add), headers that any proxy or portal might treat as an identity
assertion or as the "real" path or method, and forwarding headers from untrusted peers. Only
then do we add our own headers, so nothing we set can be removed or pre-empted by the client.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "ForwardingContext",
    "HeaderPolicy",
    "connection_named",
    "normalize_header_name",
]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

# Headers an identity-aware proxy, an auth gateway or a legacy portal might trust as "who is
# calling". A client must never be able to assert them; we remove every spelling.
_IDENTITY_HEADERS = frozenset(
    {
        "remote-user",
        "x-remote-user",
        "x-remote-group",
        "x-user",
        "x-user-id",
        "x-userid",
        "x-username",
        "x-user-email",
        "x-email",
        "x-auth-user",
        "x-auth-email",
        "x-authenticated-user",
        "x-authenticated-userid",
        "x-authenticated-groups",
        "x-auth-request-user",
        "x-auth-request-email",
        "x-auth-request-groups",
        "x-auth-request-preferred-username",
        "x-auth-request-access-token",
        "x-forwarded-user",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "x-forwarded-access-token",
        "x-ms-client-principal",
        "x-ms-client-principal-id",
        "x-ms-client-principal-name",
        "x-ms-client-principal-idp",
        "x-goog-authenticated-user-email",
        "x-goog-authenticated-user-id",
        "x-goog-iap-jwt-assertion",
        "x-amzn-oidc-data",
        "x-amzn-oidc-identity",
        "x-amzn-oidc-accesstoken",
        "cf-access-jwt-assertion",
        "cf-access-authenticated-user-email",
        "x-practice-id",
        "x-phi-proxy-subject",
        "x-phi-proxy-practice",
        "x-phi-proxy-grant",
        "x-forwarded-client-cert",
        "x-consumer-username",
        "x-consumer-id",
        "x-consumer-custom-id",
        "x-userinfo",
        "x-webauth-user",
        "x-jwt-assertion",
        "x-ssl-client-s-dn",
        "x-ssl-client-cert",
        "x-ssl-client-verify",
        "x-client-cert",
        "x-endpoint-api-userinfo",
        # Found in review (issue 17): more names that portals behind an authenticating front end
        # or client-certificate TLS read as the user, their e-mail, groups or roles.
        "x-remote-email",
        "x-remote-groups",
        "x-auth-roles",
        "x-preferred-username",
        "x-user-name",
        "x-authenticated-email",
        "ssl-client-s-dn",
        "ssl-client-i-dn",
        "ssl-client-cert",
        "ssl-client-verify",
    }
)

# Headers some frameworks and servers (IIS URL Rewrite, Symfony, Zend, nginx setups) read as the
# request's "real" path, so a client could reach a route other than the one we checked. Removed
# from every request, trusted peer or not: a load balancer has no reason to set them.
_PATH_OVERRIDE_HEADERS = frozenset({"x-original-url", "x-rewrite-url", "x-original-uri"})

# Headers frameworks (Rails, Laravel, Express method-override, ASP.NET, Spring's filter) read as
# the "real" method, so a POST the proxy did not match as a write route could reach one at the
# portal without the write-route checks. (A `_method` body or query field is not removed: the
# body is the client's data; write-route matching stays on the wire method.)
_METHOD_OVERRIDE_HEADERS = frozenset(
    {"x-http-method-override", "x-http-method", "x-method-override"}
)

# Set by this proxy only; a client's copy is dropped (trusted peers may extend the X-Forwarded-*).
_FORWARDING_HEADERS = frozenset(
    {
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-prefix",
        "x-forwarded-server",
        "x-forwarded-ssl",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-cluster-client-ip",
        "cf-connecting-ip",
        "fastly-client-ip",
    }
)
# The proxy's own request headers: they are for the proxy, never for the portal. The
# break-glass reason is evidence for the security officer, not the portal's to log or act on.
_OWN_HEADERS = frozenset({"x-request-id", "x-phi-break-glass"})

# Towards the portal: we need whole, uncompressed bodies, and we frame the (possibly
# re-encrypted, so resized) request body ourselves. The body we forward is the one aiohttp's
# server already inflated (the handler refuses codings it does not inflate), so the client's
# Content-Encoding no longer describes it. `Expect` is the client's question to us, answered by
# aiohttp's server when the body was read: forwarded, it makes the client library wait for a
# `100 Continue` from the portal before sending a body it already has (a portal that just reads
# the body never sends one, and the request times out).
_REQUEST_RANGE_HEADERS = frozenset(
    {"range", "if-range", "accept-encoding", "content-length", "content-encoding", "expect"}
)

#: Instructions to a front-end server to send a file in place of the body (nginx, Apache's
#: mod_xsendfile, lighttpd): an nginx in front of the proxy would serve a file the proxy never
#: saw, PHI in clear included. The portal's own front end handles them before the proxy, if any.
_INTERNAL_REDIRECTS = frozenset(
    {"x-accel-redirect", "x-sendfile", "x-lighttpd-send-file", "x-lighttpd-send-tempfile"}
)

#: What never goes back to the client: hop-by-hop headers, the framing the proxy recomputes,
#: and file substitutions by a front end.
_NOT_PASSED_BACK = _HOP_BY_HOP | _INTERNAL_REDIRECTS | {"content-length"}

#: Names already normalized (every request repeats the same few dozen); bounded, since the
#: names come from clients and the portal.
_NORMALIZED: dict[str, str] = {}
_NORMALIZED_MAX = 1024


def normalize_header_name(name: str) -> str:
    """Lower-case and treat `_` like `-`: some servers (CGI, WSGI, nginx) fold them together."""
    normalized = _NORMALIZED.get(name)
    if normalized is None:
        normalized = name.strip().lower().replace("_", "-")
        if len(_NORMALIZED) < _NORMALIZED_MAX:
            _NORMALIZED[name] = normalized
    return normalized


def connection_named(headers: CIMultiDictProxy[str]) -> set[str]:
    """Every header name listed in any `Connection` header (RFC 9110 §7.6.1)."""
    named: set[str] = set()
    if "Connection" not in headers:
        return named
    for value in headers.getall("Connection"):
        named.update(normalize_header_name(part) for part in value.split(",") if part.strip())
    return named


@dataclass(frozen=True, slots=True)
class ForwardingContext:
    """What the proxy knows about the hop the request arrived on."""

    peer: str | None
    scheme: str
    host: str | None
    request_id: str


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """Compiled header rules; built once from settings."""

    stripped: frozenset[str]
    trusted_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    forward_authorization: bool
    #: `stripped` plus the forwarding headers: what an untrusted peer's request loses.
    stripped_untrusted: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stripped_untrusted", self.stripped | _FORWARDING_HEADERS)

    @classmethod
    def build(
        cls,
        *,
        extra_stripped: Iterable[str],
        trusted_networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
        forward_authorization: bool,
    ) -> HeaderPolicy:
        """Combine the built-in lists with the operator's additions."""
        stripped = set(
            _HOP_BY_HOP
            | _IDENTITY_HEADERS
            | _PATH_OVERRIDE_HEADERS
            | _METHOD_OVERRIDE_HEADERS
            | _OWN_HEADERS
            | _REQUEST_RANGE_HEADERS
        )
        stripped.update(normalize_header_name(name) for name in extra_stripped)
        if not forward_authorization:
            stripped.add("authorization")
        return cls(frozenset(stripped), tuple(trusted_networks), forward_authorization)

    def peer_is_trusted(self, peer: str | None) -> bool:
        """True when the direct peer is a configured load balancer."""
        if peer is None or not self.trusted_networks:
            return False
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in network for network in self.trusted_networks)

    def upstream_request_headers(
        self, incoming: CIMultiDictProxy[str], hop: ForwardingContext
    ) -> CIMultiDict[str]:
        """Headers to send to the portal: cleaned first, then ours added."""
        trusted = self.peer_is_trusted(hop.peer)
        dropped = self.stripped if trusted else self.stripped_untrusted
        named = connection_named(incoming)
        if named:
            dropped = dropped | named
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in incoming.items():
            if normalize_header_name(name) in dropped:
                continue
            if name.lower() == "host":
                continue
            out.add(name, value)
        self._add_forwarding(out, hop, trusted=trusted)
        out["Accept-Encoding"] = "identity"
        out["X-Request-Id"] = hop.request_id
        return out

    @staticmethod
    def _add_forwarding(out: CIMultiDict[str], hop: ForwardingContext, *, trusted: bool) -> None:
        peer = hop.peer or "unknown"
        if trusted and "X-Forwarded-For" in out:
            chain = ", ".join(out.getall("X-Forwarded-For"))
            out["X-Forwarded-For"] = f"{chain}, {peer}"
        else:
            out["X-Forwarded-For"] = peer
        if not (trusted and "X-Forwarded-Proto" in out):
            out["X-Forwarded-Proto"] = hop.scheme
        if hop.host and not (trusted and "X-Forwarded-Host" in out):
            out["X-Forwarded-Host"] = hop.host

    @staticmethod
    def client_response_headers(upstream: CIMultiDictProxy[str]) -> CIMultiDict[str]:
        """Headers to pass back to the client: hop-by-hop and framing headers removed.

        Content-Length is dropped too: the proxy recomputes the framing of every body it sends.
        Content-Encoding stays for bodies streamed untouched; the handler removes every line of
        it from bodies it decodes (`response_headers.content_codings`).
        """
        dropped = _NOT_PASSED_BACK
        named = connection_named(upstream)
        if named:
            dropped = dropped | named
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in upstream.items():
            if normalize_header_name(name) not in dropped:
                out.add(name, value)
        return out

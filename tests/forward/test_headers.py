import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from proxy.forward.headers import ForwardingContext, HeaderPolicy

HOP = ForwardingContext(peer="203.0.113.7", scheme="https", host="portal.example", request_id="r1")


def _policy(trusted=(), extra=(), forward_authorization=True):
    return HeaderPolicy.build(
        extra_stripped=extra,
        trusted_networks=[ipaddress.ip_network(n) for n in trusted],
        forward_authorization=forward_authorization,
    )


def _headers(*pairs):
    return CIMultiDictProxy(CIMultiDict(pairs))


class TestUpstreamRequestHeaders:
    def test_hop_by_hop_and_connection_named_headers_are_removed(self):
        """Hop-by-hop headers and every header named in Connection never reach the portal."""
        out = _policy().upstream_request_headers(
            _headers(
                ("Connection", "keep-alive, X-Secret-Thing"),
                ("Connection", "X-Other"),
                ("X-Secret-Thing", "1"),
                ("X-Other", "2"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Upgrade", "websocket"),
                ("Accept", "application/json"),
            ),
            HOP,
        )
        for name in ("Connection", "X-Secret-Thing", "X-Other", "Keep-Alive", "TE", "Upgrade"):
            assert name not in out
        assert out["Accept"] == "application/json"

    def test_connection_cannot_remove_headers_the_proxy_sets(self):
        """Naming X-Forwarded-For or X-Request-Id in Connection does not drop the proxy's own."""
        out = _policy().upstream_request_headers(
            _headers(("Connection", "X-Forwarded-For, X-Request-Id, Accept-Encoding")), HOP
        )
        assert out["X-Forwarded-For"] == "203.0.113.7"
        assert out["X-Request-Id"] == "r1"
        assert out["Accept-Encoding"] == "identity"

    @given(
        st.sampled_from(
            [
                "X-Remote-User",
                "Remote-User",
                "X-Forwarded-User",
                "X-Auth-Request-Email",
                "X-Remote-Email",
                "X-Remote-Groups",
                "X-Auth-Roles",
                "X-Preferred-Username",
                "X-User-Name",
                "X-Authenticated-Email",
                "SSL-Client-S-DN",
            ]
        ),
        st.lists(st.booleans(), min_size=1, max_size=30),
    )
    def test_identity_headers_are_removed_in_every_case_and_underscore_variant(self, name, flips):
        """Identity headers go regardless of letter case or `_` used for `-`."""
        variant = "".join(
            (c.upper() if flips[i % len(flips)] else c.lower()) for i, c in enumerate(name)
        )
        for spelled in (variant, variant.replace("-", "_")):
            out = _policy().upstream_request_headers(_headers((spelled, "admin")), HOP)
            assert all(value != "admin" for value in out.values())

    def test_operator_listed_headers_are_removed(self):
        """strip_request_headers adds to the built-in list."""
        out = _policy(extra=["X-Portal-Role"]).upstream_request_headers(
            _headers(("x_portal_role", "superuser")), HOP
        )
        assert "x_portal_role" not in out

    def test_forwarding_headers_from_untrusted_peer_are_replaced(self):
        """A client cannot spoof X-Forwarded-*, Forwarded or X-Real-IP."""
        out = _policy().upstream_request_headers(
            _headers(
                ("X-Forwarded-For", "10.0.0.1"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "evil.example"),
                ("Forwarded", "for=10.0.0.1"),
                ("X-Real-IP", "10.0.0.1"),
            ),
            HOP,
        )
        assert out.getall("X-Forwarded-For") == ["203.0.113.7"]
        assert out["X-Forwarded-Proto"] == "https"
        assert out["X-Forwarded-Host"] == "portal.example"
        assert "Forwarded" not in out
        assert "X-Real-IP" not in out

    def test_trusted_peer_extends_the_forwarding_chain(self):
        """A configured load balancer's X-Forwarded-For is kept and the peer appended."""
        out = _policy(trusted=["203.0.113.0/24"]).upstream_request_headers(
            _headers(("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Proto", "https")), HOP
        )
        assert out["X-Forwarded-For"] == "198.51.100.9, 203.0.113.7"
        assert out["X-Forwarded-Proto"] == "https"

    def test_range_and_encoding_are_rewritten(self):
        """The portal is asked for whole, uncompressed bodies."""
        out = _policy().upstream_request_headers(
            _headers(("Range", "bytes=0-10"), ("If-Range", "x"), ("Accept-Encoding", "gzip, br")),
            HOP,
        )
        assert "Range" not in out
        assert "If-Range" not in out
        assert out.getall("Accept-Encoding") == ["identity"]

    def test_authorization_is_dropped_when_configured(self):
        """forward_authorization: false keeps the bearer token away from the portal."""
        incoming = _headers(("Authorization", "Bearer abc"))
        assert "Authorization" in _policy().upstream_request_headers(incoming, HOP)
        dropped = _policy(forward_authorization=False).upstream_request_headers(incoming, HOP)
        assert "Authorization" not in dropped


class TestClientResponseHeaders:
    def test_hop_by_hop_and_framing_headers_are_removed(self):
        """The proxy reframes every body; the portal's framing headers do not pass."""
        out = HeaderPolicy.client_response_headers(
            _headers(
                ("Connection", "close, X-Internal"),
                ("X-Internal", "1"),
                ("Transfer-Encoding", "chunked"),
                ("Content-Length", "10"),
                ("Set-Cookie", "a=1"),
                ("Set-Cookie", "b=2"),
            )
        )
        assert "X-Internal" not in out
        assert "Transfer-Encoding" not in out
        assert "Content-Length" not in out
        assert out.getall("Set-Cookie") == ["a=1", "b=2"]


class TestGatewayHeaders:
    @pytest.mark.parametrize(
        "name",
        [
            "X-Forwarded-Client-Cert",
            "X-Consumer-Username",
            "X-Consumer-Id",
            "X-Consumer-Custom-Id",
            "X-Userinfo",
            "X_WEBAUTH_USER",
            "X-JWT-Assertion",
            "X-SSL-Client-S-DN",
            "X-SSL-Client-Cert",
            "X-SSL-Client-Verify",
            "X-Client-Cert",
            "X-Endpoint-API-UserInfo",
            "X-Original-URL",
            "X-Rewrite-URL",
            "x_original_uri",
        ],
    )
    def test_gateway_identity_and_path_overrides_go_even_from_a_trusted_peer(self, name):
        """Kong/Envoy/nginx identity and IIS/Symfony path-override headers never pass."""
        policy = _policy(trusted=["203.0.113.0/24"])
        out = policy.upstream_request_headers(_headers((name, "admin")), HOP)
        assert all(value != "admin" for value in out.values())

    @pytest.mark.parametrize(
        "name",
        [
            "X-Forwarded-Port",
            "X-Forwarded-Prefix",
            "X-Forwarded-Server",
            "X-Forwarded-SSL",
            "True-Client-IP",
            "X-Client-IP",
            "X-Cluster-Client-IP",
            "CF-Connecting-IP",
            "Fastly-Client-IP",
        ],
    )
    def test_client_ip_and_forwarding_headers_pass_only_from_trusted_peers(self, name):
        """Like X-Forwarded-For: dropped from clients, kept from a configured load balancer."""
        incoming = _headers((name, "10.0.0.1"))
        assert name not in _policy().upstream_request_headers(incoming, HOP)
        trusted = _policy(trusted=["203.0.113.0/24"]).upstream_request_headers(incoming, HOP)
        assert trusted.getall(name) == ["10.0.0.1"]

    def test_content_encoding_is_not_forwarded(self):
        """The forwarded body is the one aiohttp's server already inflated."""
        out = _policy().upstream_request_headers(
            _headers(("Content-Encoding", "gzip"), ("content_encoding", "gzip")), HOP
        )
        assert "Content-Encoding" not in out
        assert "content_encoding" not in out

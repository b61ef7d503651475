import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import serialization
from identity_helpers import AUDIENCE, ISSUER
from multidict import CIMultiDict

from proxy.identity import AuthenticationError, Caller, DemoIssuer, JwtAuthenticator, Subject

pytestmark = pytest.mark.asyncio
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def bearer(token):
    """Headers carrying `token` as a bearer token."""
    return CIMultiDict({"Authorization": f"Bearer {token}"})


def b64(data):
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(header, claims, signature=b""):
    """A hand-built JWT (for forgeries PyJWT refuses to make)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head, f"{head}.{b64(signature)}"


def claims_for(sub, now):
    """Valid claims for `sub` at `now`."""
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": int(now), "exp": int(now) + 300}


async def refused(auth, headers, now):
    """The AuthenticationError `headers` cause."""
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(headers, now=now)
    return info.value


class TestValidTokens:
    @pytest.mark.parametrize("issuer_fixture", ["es_issuer", "rs_issuer", "ed_issuer"])
    async def test_valid_token_yields_subject(self, request, auth, now, issuer_fixture):
        """A valid ES256/RS256/EdDSA token yields Caller(Subject(iss, sub)) with its jti."""
        issuer = request.getfixturevalue(issuer_fixture)
        token = issuer.mint("user-1", now=now, jti="jti-1")
        caller = await auth.authenticate(bearer(token), now=now)
        assert caller == Caller(Subject(ISSUER, "user-1"), token_id="jti-1")

    async def test_identity_ignores_email_and_username(self, auth, es_issuer, now):
        """The subject is (iss, sub) even when email and preferred_username are present."""
        token = es_issuer.mint("sub-9", now=now, email="a@b.test", preferred_username="alice")
        caller = await auth.authenticate(bearer(token), now=now)
        assert caller.subject == Subject(ISSUER, "sub-9")

    async def test_scheme_is_case_insensitive(self, auth, es_issuer, now):
        """'bearer' in any case is the Bearer scheme (RFC 7235)."""
        token = es_issuer.mint("u", now=now)
        headers = CIMultiDict({"authorization": f"bEaReR {token}"})
        assert (await auth.authenticate(headers, now=now)).subject == Subject(ISSUER, "u")

    async def test_second_configured_issuer_accepted(self, make_settings, now):
        """A token from any configured issuer verifies when its key is in the JWKS."""
        other = DemoIssuer(issuer="https://other.test", audience=AUDIENCE, kid="o-1")
        path = make_settings().jwks_file
        other.write_jwks(path)
        auth = JwtAuthenticator(make_settings(issuers=[ISSUER, "https://other.test"]))
        caller = await auth.authenticate(bearer(other.mint("u", now=now)), now=now)
        assert caller.subject == Subject("https://other.test", "u")


class TestMissingOrMalformedHeader:
    async def test_no_header_is_anonymous(self, auth, now):
        """No Authorization header means an anonymous caller (PHI stays masked)."""
        assert await auth.authenticate(CIMultiDict(), now=now) is Caller.anonymous

    async def test_no_header_refused_when_required(self, make_settings, now):
        """With require: true, a missing token is a 401 without an error code (RFC 6750 §3.1)."""
        auth = JwtAuthenticator(make_settings(require=True))
        error = await refused(auth, CIMultiDict(), now)
        assert error.reason == "missing_token"
        assert error.www_authenticate == 'Bearer realm="phi-proxy"'

    async def test_two_authorization_headers_refused(self, auth, es_issuer, now):
        """Two Authorization headers are ambiguous and refused, even if both are valid."""
        token = es_issuer.mint("u", now=now)
        headers = CIMultiDict([("Authorization", f"Bearer {token}")] * 2)
        error = await refused(auth, headers, now)
        assert error.reason == "ambiguous_authorization"
        assert error.www_authenticate == 'Bearer realm="phi-proxy", error="invalid_request"'

    async def test_basic_scheme_refused(self, auth, now):
        """A non-Bearer scheme is refused, not ignored."""
        error = await refused(auth, CIMultiDict({"Authorization": "Basic dXNlcjpwYXNz"}), now)
        assert error.reason == "not_bearer"

    @pytest.mark.parametrize("value", ["Bearer", "Bearer ", "Bearer a b", "Bearer not.a.jwt"])
    async def test_malformed_refused(self, auth, now, value):
        """An empty, spaced or unparsable bearer token is refused."""
        error = await refused(auth, CIMultiDict({"Authorization": value}), now)
        assert error.reason == "malformed"

    async def test_oversized_token_refused_unparsed(self, auth, now):
        """A header beyond max_token_bytes is refused before any parsing."""
        error = await refused(auth, bearer("a" * 9000), now)
        assert error.reason == "token_too_large"


class TestClaims:
    async def test_expired(self, auth, es_issuer, now):
        """A token that expired more than the leeway ago is refused as expired."""
        token = es_issuer.mint("u", now=now - 400, ttl=300)
        assert (await refused(auth, bearer(token), now)).reason == "expired"

    async def test_expired_within_leeway_accepted(self, auth, es_issuer, now):
        """A token that expired 10 s ago is still accepted with the default 30 s leeway."""
        token = es_issuer.mint("u", now=now - 310, ttl=300)
        assert (await auth.authenticate(bearer(token), now=now)).subject is not None

    async def test_iat_in_future_beyond_leeway(self, auth, es_issuer, now):
        """A token issued 60 s in the future is refused."""
        token = es_issuer.mint("u", now=now + 60)
        assert (await refused(auth, bearer(token), now)).reason == "issued_in_future"

    async def test_nbf_in_future_beyond_leeway(self, auth, es_issuer, now):
        """A token not valid before 60 s from now is refused."""
        token = es_issuer.mint("u", now=now, nbf=int(now) + 60)
        assert (await refused(auth, bearer(token), now)).reason == "not_yet_valid"

    async def test_nbf_within_leeway_accepted(self, auth, es_issuer, now):
        """An nbf 20 s ahead is tolerated by the 30 s leeway."""
        token = es_issuer.mint("u", now=now, nbf=int(now) + 20)
        assert (await auth.authenticate(bearer(token), now=now)).subject is not None

    async def test_leeway_zero_is_strict(self, make_settings, es_issuer, now):
        """With leeway 0, a token expiring exactly now is refused."""
        auth = JwtAuthenticator(make_settings(leeway_seconds=0))
        token = es_issuer.mint("u", now=now - 300, ttl=300)
        assert (await refused(auth, bearer(token), now)).reason == "expired"

    @pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
    async def test_missing_required_claim(self, auth, es_issuer, now, claim):
        """Each of exp, iat, iss, aud and sub is required."""
        token = es_issuer.mint("u", now=now, omit=(claim,))
        assert (await refused(auth, bearer(token), now)).reason == f"missing_{claim}"

    async def test_wrong_audience(self, auth, es_issuer, now):
        """A token for another audience is refused."""
        token = es_issuer.mint("u", now=now, audience="some-other-app")
        assert (await refused(auth, bearer(token), now)).reason == "wrong_audience"

    async def test_wrong_issuer(self, auth, es_issuer, now):
        """A token from an unconfigured issuer is refused, even when signed by a known key."""
        token = es_issuer.mint("u", now=now, issuer="https://evil.test")
        assert (await refused(auth, bearer(token), now)).reason == "wrong_issuer"

    @pytest.mark.parametrize("value", ["soon", True, None])
    async def test_non_numeric_exp_refused(self, auth, es_issuer, now, value):
        """A non-numeric exp never counts as a valid expiry."""
        token = es_issuer.mint("u", now=now, exp=value)
        error = await refused(auth, bearer(token), now)
        assert error.reason in {"invalid", "bad_exp", "missing_exp"}

    @pytest.mark.parametrize(
        ("claim", "value"),
        [
            ("exp", float("nan")),
            ("exp", float("inf")),
            ("iat", float("-inf")),
            ("nbf", float("nan")),
        ],
    )
    async def test_non_finite_times_are_refused(self, auth, es_issuer, now, claim, value):
        """A signed NaN/Infinity time (JSON parsers accept them) would never expire: refused."""
        token = es_issuer.mint("u", now=now, **{claim: value})
        error = await refused(auth, bearer(token), now)
        assert error.reason in {"invalid", f"bad_{claim}"}

    @pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
    @pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["huge", "huge-negative"])
    async def test_times_too_large_for_a_clock_are_refused(
        self, auth, es_issuer, now, claim, value
    ):
        """A 400-digit time claim cannot be compared with a clock: `bad_<claim>`, not a crash."""
        token = es_issuer.mint("u", now=now, **{claim: value})
        assert (await refused(auth, bearer(token), now)).reason == f"bad_{claim}"

    async def test_empty_sub_refused(self, auth, es_issuer, now):
        """An empty sub names nobody and is refused."""
        token = es_issuer.mint("", now=now)
        assert (await refused(auth, bearer(token), now)).reason in {"bad_sub", "invalid"}


class TestAlgorithms:
    async def test_alg_none_refused(self, auth, now):
        """An unsigned token (alg: none) is refused."""
        _, token = unsigned_token({"alg": "none", "typ": "JWT"}, claims_for("u", now))
        assert (await refused(auth, bearer(token), now)).reason == "algorithm_refused"

    async def test_hs256_with_rsa_public_key_bytes_refused(self, make_settings, rs_issuer, now):
        """HS256 keyed with the RSA public key's PEM bytes (key confusion) never verifies."""
        auth = JwtAuthenticator(make_settings(algorithms=["RS256"]))
        pem = rs_issuer.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        header = {"alg": "HS256", "typ": "JWT", "kid": rs_issuer.kid}
        head, _ = unsigned_token(header, claims_for("u", now))
        signature = hmac.new(pem, head.encode(), hashlib.sha256).digest()
        token = f"{head}.{b64(signature)}"
        assert (await refused(auth, bearer(token), now)).reason == "algorithm_refused"

    async def test_algorithm_not_in_config_refused(self, make_settings, ed_issuer, now):
        """A correctly signed EdDSA token is refused when only ES256 is configured."""
        auth = JwtAuthenticator(make_settings(algorithms=["ES256"]))
        token = ed_issuer.mint("u", now=now)
        assert (await refused(auth, bearer(token), now)).reason == "algorithm_not_allowed"

    async def test_header_alg_swapped_to_other_key_type(self, auth, es_issuer, rs_issuer, now):
        """An ES256 signature relabelled RS256 under the RSA kid fails verification."""
        token = es_issuer.mint("u", now=now)
        _, payload, sig = token.split(".")
        header = {"alg": "RS256", "typ": "JWT", "kid": rs_issuer.kid}
        forged = f"{b64(json.dumps(header).encode())}.{payload}.{sig}"
        assert (await refused(auth, bearer(forged), now)).reason in {"bad_signature", "invalid"}

    async def test_bad_signature(self, auth, es_issuer, now):
        """A token signed by a stranger's key under a known kid is refused."""
        stranger = DemoIssuer(issuer=ISSUER, audience=AUDIENCE, kid=es_issuer.kid)
        token = stranger.mint("u", now=now)
        assert (await refused(auth, bearer(token), now)).reason == "bad_signature"

    async def test_error_never_echoes_token(self, auth, es_issuer, now):
        """Neither the message nor the WWW-Authenticate value contains any part of the token."""
        token = es_issuer.mint("u", now=now, audience="other")
        error = await refused(auth, bearer(token), now)
        for part in token.split("."):
            assert part not in str(error)
            assert part not in error.www_authenticate
        assert error.www_authenticate == 'Bearer realm="phi-proxy", error="invalid_token"'


class TestSpelling:
    @pytest.mark.parametrize(
        ("respell", "reason"),
        [
            (lambda sig: sig + "==", "noncanonical_encoding"),
            (lambda sig: sig[:-1] + ALPHABET[ALPHABET.index(sig[-1]) | 0b1111], None),
            (lambda sig: sig[:20] + "!!!!" + sig[20:], "malformed"),
        ],
        ids=["padding", "spare-bits", "junk"],
    )
    async def test_respelled_signature_is_refused(self, auth, es_issuer, now, respell, reason):
        """Only the issued spelling verifies; padding, spare bits or junk never do.

        An ES256 signature is 64 bytes, 86 characters: the last one carries 4 unused bits.
        """
        token = es_issuer.mint("u", now=now)
        head, _, signature = token.rpartition(".")
        assert await auth.authenticate(bearer(token), now=now)
        respelled = respell(signature)
        assert base64.urlsafe_b64decode(respelled.replace("!", "") + "==")[:64] == (
            base64.urlsafe_b64decode(signature + "==")
        )
        error = await refused(auth, bearer(f"{head}.{respelled}"), now)
        assert error.reason == (reason or "noncanonical_encoding")


class TestJwksKeySelection:
    def write(self, path, issuer, **changes):
        jwk = {**issuer.public_jwk(), **changes}
        jwk = {k: v for k, v in jwk.items() if v is not None}
        issuer.write_jwks(path, {"keys": [jwk]})

    @pytest.mark.parametrize(
        "changes",
        [{"use": "enc"}, {"key_ops": ["encrypt"]}, {"key_ops": "verify"}, {"alg": "ES384"}],
    )
    async def test_key_not_for_signatures_is_not_used(self, make_settings, es_issuer, now, changes):
        """A JWKS key whose use/key_ops/alg do not allow ES256 verification is never used."""
        path = make_settings().jwks_file
        self.write(path, es_issuer, **changes)
        auth = JwtAuthenticator(make_settings())
        error = await refused(auth, bearer(es_issuer.mint("u", now=now)), now)
        assert error.reason == "unknown_key"

    async def test_key_without_use_or_alg_is_used(self, make_settings, es_issuer, now):
        """A key with no use, key_ops or alg is usable when its type fits the algorithm."""
        path = make_settings().jwks_file
        self.write(path, es_issuer, use=None, alg=None, key_ops=["verify"])
        auth = JwtAuthenticator(make_settings())
        assert (await auth.authenticate(bearer(es_issuer.mint("u", now=now)), now=now)).subject

    async def test_unknown_kid_refused_and_refresh_bounded(self, auth, es_issuer, now):
        """An unknown kid is refused; 1,000 of them cause at most one reload beyond the first."""
        for i in range(1000):
            token = es_issuer.mint("u", now=now, kid=f"forged-{i}")
            assert (await refused(auth, bearer(token), now + i % 50)).reason == "unknown_key"
        assert auth.jwks_fetch_count <= 2

    async def test_rotation_picked_up_after_interval(self, make_settings, es_issuer, now):
        """A key added to the JWKS is used once the refresh interval has passed, not before."""
        path = make_settings().jwks_file
        auth = JwtAuthenticator(make_settings())
        await auth.authenticate(bearer(es_issuer.mint("u", now=now)), now=now)
        new = DemoIssuer(issuer=ISSUER, audience=AUDIENCE, kid="es-2")
        new.write_jwks(path, {"keys": [es_issuer.public_jwk(), new.public_jwk()]})
        token = new.mint("u", now=now + 10)
        assert (await refused(auth, bearer(token), now + 10)).reason == "unknown_key"
        assert (await auth.authenticate(bearer(token), now=now + 70)).subject is not None

    async def test_unreadable_jwks_refuses_everything(self, make_settings, es_issuer, now):
        """With no loadable JWKS, every token is refused (fail closed)."""
        path = make_settings().jwks_file
        path.write_text("not json")
        auth = JwtAuthenticator(make_settings())
        error = await refused(auth, bearer(es_issuer.mint("u", now=now)), now)
        assert error.reason == "jwks_unavailable"

    async def test_published_jwks_has_no_private_parts(self, es_issuer, rs_issuer, ed_issuer):
        """DemoIssuer publishes public keys only (no 'd', 'p', 'q' members)."""
        for issuer in (es_issuer, rs_issuer, ed_issuer):
            for jwk in issuer.jwks()["keys"]:
                assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)

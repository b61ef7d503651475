import pytest
from identity_helpers import AUDIENCE, ISSUER
from multidict import CIMultiDict

from proxy.identity import AuthenticationError, Caller, DemoIssuer, JwtAuthenticator, Subject
from proxy.identity.token_cache import VerifiedTokenCache, time_failure

pytestmark = pytest.mark.asyncio


def bearer(token):
    """Headers carrying `token` as a bearer token."""
    return CIMultiDict({"Authorization": f"Bearer {token}"})


async def reason_for(auth, token, now):
    """The refusal reason for `token` at `now`."""
    with pytest.raises(AuthenticationError) as info:
        await auth.authenticate(bearer(token), now=now)
    return info.value.reason


class TestCacheHits:
    async def test_repeat_token_is_served_from_the_cache(self, auth, es_issuer, now):
        """A verified token is remembered once and a repeat yields the same caller."""
        token = es_issuer.mint("user-1", now=now, jti="j1")
        first = await auth.authenticate(bearer(token), now=now)
        assert auth.cached_tokens == 1
        second = await auth.authenticate(bearer(token), now=now + 1)
        assert first == second == Caller(Subject(ISSUER, "user-1"), token_id="j1")
        assert auth.cached_tokens == 1

    async def test_a_different_token_string_is_not_a_hit(self, auth, es_issuer, now):
        """A token differing by one signature character is verified on its own and refused."""
        token = es_issuer.mint("user-1", now=now)
        await auth.authenticate(bearer(token), now=now)
        head, _, sig = token.rpartition(".")
        forged = f"{head}.{'A' if sig[0] != 'A' else 'B'}{sig[1:]}"
        assert await reason_for(auth, forged, now) == "bad_signature"
        assert auth.cached_tokens == 1

    async def test_cache_holds_digests_not_tokens(self, es_issuer, now):
        """The cache is keyed by SHA-256 digests: the token text is nowhere in it."""
        cache = VerifiedTokenCache(4)
        token = es_issuer.mint("user-1", now=now)
        key = cache.key_of(token)
        cache.put(key, 1, Caller(Subject(ISSUER, "u")), (now + 60, now, None))
        assert len(key) == 32
        assert token not in repr(cache)
        assert cache.get(key, 1) is not None


class TestExpiryOnHits:
    async def test_cached_token_expires_to_the_second(self, make_settings, es_issuer, now):
        """A cached token is refused at exactly exp + leeway, as an uncached one would be."""
        auth = JwtAuthenticator(make_settings(leeway_seconds=30))
        token = es_issuer.mint("user-1", now=now, ttl=60)
        await auth.authenticate(bearer(token), now=now)
        exp = now + 60
        ok = await auth.authenticate(bearer(token), now=exp + 29.5)
        assert ok.subject == Subject(ISSUER, "user-1")
        assert await reason_for(auth, token, exp + 30) == "expired"
        assert auth.cached_tokens == 0
        uncached = JwtAuthenticator(make_settings(leeway_seconds=30), token_cache_entries=0)
        assert await reason_for(uncached, token, exp + 30) == "expired"

    async def test_cached_token_rechecks_iat_and_nbf(self, make_settings, es_issuer, now):
        """A hit at an earlier `now` is refused for iat/nbf in the future, like a fresh check."""
        auth = JwtAuthenticator(make_settings(leeway_seconds=0))
        token = es_issuer.mint("user-1", now=now, nbf=int(now) + 10)
        assert await reason_for(auth, token, now) == "not_yet_valid"
        assert auth.cached_tokens == 0
        await auth.authenticate(bearer(token), now=now + 10)
        assert auth.cached_tokens == 1
        assert await reason_for(auth, token, now + 5) == "not_yet_valid"
        plain = es_issuer.mint("user-2", now=now)
        await auth.authenticate(bearer(plain), now=now)
        assert await reason_for(auth, plain, now - 1) == "issued_in_future"

    async def test_time_rule_is_shared(self, now):
        """time_failure gives the reason codes of the fresh check for each boundary."""
        times = (now + 60, now, now + 5)
        assert time_failure(times, now + 5, 0) is None
        assert time_failure(times, now + 60, 0) == "expired"
        assert time_failure(times, now - 1, 0) == "issued_in_future"
        assert time_failure((now + 60, now, now + 5), now + 4, 0) == "not_yet_valid"
        assert time_failure(times, now + 89.9, 30) is None


class TestBounds:
    async def test_entries_are_capped_oldest_first(self, make_settings, es_issuer, now):
        """With room for two tokens a third evicts the oldest; the evicted one still verifies."""
        auth = JwtAuthenticator(make_settings(), token_cache_entries=2)
        tokens = [es_issuer.mint(f"user-{i}", now=now) for i in range(3)]
        for token in tokens:
            await auth.authenticate(bearer(token), now=now)
        assert auth.cached_tokens == 2
        caller = await auth.authenticate(bearer(tokens[0]), now=now)
        assert caller.subject == Subject(ISSUER, "user-0")
        assert auth.cached_tokens == 2

    async def test_zero_entries_disables_the_cache(self, make_settings, es_issuer, now):
        """token_cache_entries=0 verifies every request and remembers nothing."""
        auth = JwtAuthenticator(make_settings(), token_cache_entries=0)
        token = es_issuer.mint("user-1", now=now)
        await auth.authenticate(bearer(token), now=now)
        await auth.authenticate(bearer(token), now=now)
        assert auth.cached_tokens == 0

    async def test_negative_size_is_refused(self):
        """A negative cap is a programming error, not an unbounded cache."""
        with pytest.raises(ValueError, match="max_entries"):
            VerifiedTokenCache(-1)


class TestJwksChanges:
    async def test_removed_key_stops_verifying_at_next_refresh(
        self, make_settings, es_issuer, rs_issuer, now
    ):
        """After a refresh that no longer lists a key, its cached tokens are refused."""
        settings = make_settings(jwks_refresh_min_interval=10)
        auth = JwtAuthenticator(settings)
        token = es_issuer.mint("user-1", now=now)
        await auth.authenticate(bearer(token), now=now)
        assert auth.cached_tokens == 1
        es_issuer.write_jwks(settings.jwks_file, {"keys": [rs_issuer.public_jwk()]})
        # Until a refresh runs the old keys (and the cached token) stand, as before the cache.
        await auth.authenticate(bearer(token), now=now + 1)
        stranger = DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="ES256", kid="new-9")
        assert await reason_for(auth, stranger.mint("x", now=now), now + 11) == "unknown_key"
        assert auth.jwks_fetch_count == 2
        assert await reason_for(auth, token, now + 12) == "unknown_key"
        assert auth.cached_tokens == 0

    async def test_rotated_key_set_drops_every_entry(self, make_settings, es_issuer, now):
        """Any change in the JWKS content empties the cache, even for keys still present."""
        settings = make_settings(jwks_refresh_min_interval=10)
        auth = JwtAuthenticator(settings)
        token = es_issuer.mint("user-1", now=now)
        await auth.authenticate(bearer(token), now=now)
        newcomer = DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="ES256", kid="es-2")
        es_issuer.write_jwks(
            settings.jwks_file, {"keys": [es_issuer.public_jwk(), newcomer.public_jwk()]}
        )
        await auth.authenticate(bearer(newcomer.mint("user-2", now=now)), now=now + 11)
        assert auth.cached_tokens == 1  # only the newcomer's token, verified after the change
        assert (await auth.authenticate(bearer(token), now=now + 12)).subject == Subject(
            ISSUER, "user-1"
        )

    async def test_unchanged_refresh_keeps_entries(self, make_settings, es_issuer, now):
        """A refresh that loads the same keys (a forged kid) does not flush the cache."""
        settings = make_settings(jwks_refresh_min_interval=10)
        auth = JwtAuthenticator(settings)
        await auth.authenticate(bearer(es_issuer.mint("user-1", now=now)), now=now)
        stranger = DemoIssuer(issuer=ISSUER, audience=AUDIENCE, algorithm="ES256", kid="new-9")
        assert await reason_for(auth, stranger.mint("x", now=now), now + 11) == "unknown_key"
        assert auth.cached_tokens == 1


class TestFailuresNotCached:
    async def test_refusals_are_never_remembered(self, make_settings, es_issuer, now):
        """Wrong audience, expired and forged tokens are refused every time; nothing is stored."""
        auth = JwtAuthenticator(make_settings())
        bad_aud = es_issuer.mint("u", now=now, audience="someone-else")
        expired = es_issuer.mint("u", now=now - 1000, ttl=60)
        for _ in range(2):
            assert await reason_for(auth, bad_aud, now) == "wrong_audience"
            assert await reason_for(auth, expired, now) == "expired"
        assert auth.cached_tokens == 0

    async def test_refused_then_valid_is_not_a_cached_refusal(self, make_settings, es_issuer, now):
        """A token refused as not yet valid verifies later: refusals are not cached either."""
        auth = JwtAuthenticator(make_settings(leeway_seconds=0))
        token = es_issuer.mint("u", now=now, nbf=int(now) + 5)
        assert await reason_for(auth, token, now) == "not_yet_valid"
        assert (await auth.authenticate(bearer(token), now=now + 5)).subject == Subject(ISSUER, "u")

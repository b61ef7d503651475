"""A JWKS that cannot be read while the proxy runs: last good keys, for a bounded time only.

Chosen behaviour (docs/identity.md, "Key refresh"): keys read at T keep verifying while
refreshes fail, but no token is accepted with them after T + twice jwks_max_age_seconds; from the
first failed refresh the cache reports the problem (readiness: not ready), naming the source.
"""

import pytest
from multidict import CIMultiDict

from proxy.identity import AuthenticationError, JwtAuthenticator, build_authenticator
from proxy.identity.key_health import inherit_keys, key_problems

MAX_AGE = 300.0


def bearer(token):
    return CIMultiDict({"Authorization": f"Bearer {token}"})


@pytest.fixture
def settings(make_settings):
    return make_settings(jwks_max_age_seconds=MAX_AGE, jwks_refresh_min_interval=60)


async def verifies(auth, issuer, now):
    try:
        await auth.authenticate(bearer(issuer.mint("u", now=now)), now=now)
    except AuthenticationError as exc:
        return exc.reason
    return True


async def test_a_vanished_file_keeps_the_last_keys_until_twice_max_age_then_refuses(
    settings, es_issuer, now
):
    """Deleted after the first load: tokens verify until twice max_age, then jwks_unavailable."""
    auth = JwtAuthenticator(settings)
    assert await verifies(auth, es_issuer, now) is True
    assert await key_problems(auth, now=now) == []
    settings.jwks_file.unlink()
    stale = now + MAX_AGE + 1  # the refresh this triggers fails
    assert await verifies(auth, es_issuer, stale) is True
    (problem,) = await key_problems(auth, now=stale)
    assert problem.startswith(f"identity.jwks_file {settings.jwks_file}: cannot be read")
    assert "still verifying with the keys read 301 s ago for at most 299 s more" in problem
    assert await verifies(auth, es_issuer, now + 2 * MAX_AGE - 1) is True
    assert await verifies(auth, es_issuer, now + 2 * MAX_AGE) == "jwks_unavailable"
    (problem,) = await key_problems(auth, now=now + 2 * MAX_AGE)
    assert "are too old to trust, so every bearer token gets 401" in problem


async def test_the_file_coming_back_clears_the_problem(settings, es_issuer, now):
    """A good read after failures: problem gone, keys fresh again, tokens verify."""
    auth = JwtAuthenticator(settings)
    saved = settings.jwks_file.read_bytes()
    settings.jwks_file.write_text("{")
    assert await verifies(auth, es_issuer, now) == "jwks_unavailable"
    (problem,) = await key_problems(auth, now=now)
    assert "it is not valid JSON" in problem
    settings.jwks_file.write_bytes(saved)
    later = now + 61  # one refresh interval: the readiness probe reads it again
    assert await key_problems(auth, now=later) == []
    assert await verifies(auth, es_issuer, later + 3 * MAX_AGE - 1) is True


async def test_a_reloaded_authenticator_inherits_the_last_keys_when_the_file_is_gone(
    settings, es_issuer, now
):
    """A reload after the file vanished does not drop the keys at once, nor extend their life."""
    old = JwtAuthenticator(settings)
    assert await verifies(old, es_issuer, now) is True
    settings.jwks_file.unlink()
    new = build_authenticator(settings)
    inherit_keys(new, old)
    assert await verifies(new, es_issuer, now + 1) is True
    assert (await key_problems(new, now=now + 1))[0].endswith(
        "still verifying with the keys read 1 s ago for at most 599 s more"
    )
    assert await verifies(new, es_issuer, now + 2 * MAX_AGE) == "jwks_unavailable"


async def test_an_inherited_key_removed_from_the_file_stops_at_once(
    settings, es_issuer, rs_issuer, now
):
    """The inherited keys are read again before the first token: a removed key never verifies."""
    old = JwtAuthenticator(settings)
    assert await verifies(old, es_issuer, now) is True
    rs_issuer.write_jwks(settings.jwks_file)  # the IdP replaced es-1 by rs-1
    new = build_authenticator(settings)
    inherit_keys(new, old)
    assert await verifies(new, es_issuer, now + 1) == "unknown_key"
    assert await verifies(new, rs_issuer, now + 1) is True
    assert await key_problems(new, now=now + 1) == []

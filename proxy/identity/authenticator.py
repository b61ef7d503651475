"""Turning a request's headers into a `Caller`: the `Authenticator` seam and its JWT implementation.

`build_authenticator` is the only place that knows which implementation a config selects, so a
later `mode: introspection` (RFC 7662) or `mode: trusted_header` plugs in there without touching
the proxy. Every failure raises `AuthenticationError` (401); nothing here returns a half-verified
caller.

PyJWT checks the signature, the required claims, `iss`, `aud` and the claim types. It reads the
wall clock for `exp`/`nbf`/`iat`, so those three checks are switched off in PyJWT and applied here
with the `now` the caller passes in — one clock governs, and tests need no monkeypatching.

A token must be spelled canonically (`jws_form`: no padding, nothing outside base64url) before
PyJWT reads it, and its time claims must be finite numbers a clock can be compared to.

A token that passed every check is remembered (`VerifiedTokenCache`, keyed by its SHA-256) with
its times; a repeat re-checks only the times, against the same `now` and leeway. The cache is
dropped whenever the JWKS changes, and refusals are never remembered.
"""

from __future__ import annotations

import logging
import math
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import jwt

from proxy.identity.errors import AuthenticationError
from proxy.identity.jwks import (
    MAX_JWKS_BYTES,
    JwksCache,
    JwksFetcher,
    JwksUnavailableError,
    WeakKeyError,
)
from proxy.identity.jwks import file_fetcher as _file_fetcher
from proxy.identity.jws_form import check_compact_form
from proxy.identity.subject import Caller, Subject
from proxy.identity.token_cache import (
    DEFAULT_TOKEN_CACHE_ENTRIES,
    TokenTimes,
    VerifiedTokenCache,
    time_failure,
)

if TYPE_CHECKING:
    from multidict import MultiMapping

    from proxy.identity.settings import IdentitySettings

__all__ = [
    "Authenticator",
    "IssuerRouter",
    "JwtAuthenticator",
    "bearer_token",
    "build_authenticator",
    "jwks_source",
]

_log = logging.getLogger(__name__)

_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_MAX_JTI = 256


class Authenticator(Protocol):
    """Anything that can say who sent a request."""

    async def authenticate(self, headers: MultiMapping[str], *, now: float) -> Caller:
        """Return the verified caller or `Caller.anonymous`; raise AuthenticationError (→ 401)."""
        ...

    async def close(self) -> None:
        """Release network resources."""
        ...

    def jwks_caches(self) -> tuple[JwksCache, ...]:
        """The key caches behind it (one per identity provider), for readiness and reloads."""
        ...


def _number(payload: dict[str, Any], claim: str) -> float | None:
    """The time claim as a float; `bad_<claim>` unless it is a finite number.

    NaN and Infinity compare false, so such a token would never expire; an integer too large
    for a float (a 400-digit `exp`) would raise OverflowError, a 500, if it were compared.
    """
    value = payload.get(claim)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationError(f"bad_{claim}")
    try:
        number = float(value)
    except OverflowError:
        raise AuthenticationError(f"bad_{claim}") from None
    if not math.isfinite(number):
        raise AuthenticationError(f"bad_{claim}")
    return number


class JwtAuthenticator:
    """Verifies `Authorization: Bearer <JWT>` against the configured issuers' JWKS."""

    def __init__(
        self,
        settings: IdentitySettings,
        *,
        session: aiohttp.ClientSession | None = None,
        fetcher: JwksFetcher | None = None,
        token_cache_entries: int = DEFAULT_TOKEN_CACHE_ENTRIES,
    ) -> None:
        """Build from settings; `session` is used for `jwks_url`, `fetcher` overrides both.

        `token_cache_entries` caps the cache of verified tokens (0 verifies every request).
        """
        self._settings = settings
        self._session = session
        self._owns_session = False
        if fetcher is None:
            if settings.jwks_file is not None:
                fetcher = _file_fetcher(settings.jwks_file)
            else:
                fetcher = self._fetch_url
        self._jwks = JwksCache(
            fetcher,
            min_refresh_interval=settings.jwks_refresh_min_interval,
            max_age=settings.jwks_max_age_seconds,
            source=jwks_source(settings),
        )
        self._algorithms = frozenset(settings.algorithms)
        self._verified = VerifiedTokenCache(token_cache_entries)

    def jwks_caches(self) -> tuple[JwksCache, ...]:
        """This provider's one key cache."""
        return (self._jwks,)

    @property
    def jwks_fetch_count(self) -> int:
        """How many JWKS loads were attempted so far (for tests and metrics)."""
        return self._jwks.fetch_count

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are remembered right now (for tests and metrics)."""
        return len(self._verified)

    @property
    def jwks_loaded_at(self) -> float | None:
        """When (time.time()) the JWKS held now was loaded; None if never (for metrics)."""
        return self._jwks.loaded_at

    @property
    def jwks_keys(self) -> int:
        """How many JWKS entries are held (for metrics)."""
        return self._jwks.size

    async def _fetch_url(self) -> bytes:
        url = self._settings.jwks_url
        if url is None:  # pragma: no cover - guarded by the settings validator
            raise RuntimeError("no jwks_url configured")
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        timeout = aiohttp.ClientTimeout(total=self._settings.jwks_fetch_timeout_seconds)
        # No redirects: a redirect could downgrade the key download to plain http.
        async with self._session.get(url, timeout=timeout, allow_redirects=False) as response:
            response.raise_for_status()
            return await response.content.read(MAX_JWKS_BYTES + 1)

    async def close(self) -> None:
        """Close the HTTP session if this authenticator opened it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def authenticate(self, headers: MultiMapping[str], *, now: float) -> Caller:
        """Return the caller named by a valid bearer token, or anonymous when there is none."""
        token = bearer_token(headers, self._settings)
        if token is None:
            return Caller.anonymous
        return await self.verify_token(token, now=now)

    async def verify_token(self, token: str, *, now: float) -> Caller:
        """The caller named by `token` (the bearer credential itself), or AuthenticationError."""
        key = self._verified.key_of(token)
        hit = self._verified.get(key, self._jwks.generation)
        if hit is not None:
            caller, times = hit
            reason = time_failure(times, now, self._settings.leeway_seconds)
            if reason is None:
                return caller
            self._verified.discard(key)
            raise AuthenticationError(reason)
        payload, times = await self._verify(token, now)
        try:
            subject = Subject(payload["iss"], payload["sub"])
        except ValueError:
            raise AuthenticationError("bad_sub") from None
        jti = payload.get("jti")
        caller = Caller(
            subject,
            token_id=jti if isinstance(jti, str) and len(jti) <= _MAX_JTI else None,
            claims=MappingProxyType(payload),
        )
        # No await since the keys were chosen: this is the generation that verified the token.
        self._verified.put(key, self._jwks.generation, caller, times)
        return caller

    async def verified_claims(self, token: str, *, now: float) -> dict[str, Any]:
        """Every claim of `token` once it passed every check of `verify_token` (never cached).

        For the admin API, which reads a role claim: each call verifies the signature again, so
        a token is judged by the keys and the clock of that moment.
        """
        payload, _times = await self._verify(token, now)
        try:
            Subject(payload["iss"], payload["sub"])
        except ValueError:
            raise AuthenticationError("bad_sub") from None
        return payload

    async def _verify(self, token: str, now: float) -> tuple[dict[str, Any], TokenTimes]:
        # Only here, before the signature: a cache hit is the exact text that passed this check.
        check_compact_form(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.upper().startswith("HS") or alg.lower() == "none":
            raise AuthenticationError("algorithm_refused")
        if alg not in self._algorithms:
            raise AuthenticationError("algorithm_not_allowed")
        kid = header.get("kid")
        try:
            keys = await self._jwks.keys_for(kid, alg, now=now)
        except JwksUnavailableError:
            raise AuthenticationError("jwks_unavailable") from None
        except WeakKeyError:
            raise AuthenticationError("weak_key") from None
        if not keys:
            raise AuthenticationError("unknown_key")
        for key in keys:
            payload = self._decode(token, key, alg)
            if payload is not None:
                return payload, self._check_times(payload, now)
        raise AuthenticationError("bad_signature")

    def _decode(self, token: str, key: jwt.PyJWK, alg: str) -> dict[str, Any] | None:
        """Verify with one key: the payload, None on a signature mismatch, else raise."""
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self._settings.audience,
                issuer=self._settings.issuers,
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError:
            return None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"missing_{exc.claim}") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("wrong_issuer") from None
        except jwt.PyJWTError:
            raise AuthenticationError("invalid") from None
        return payload

    def _check_times(self, payload: dict[str, Any], now: float) -> TokenTimes:
        """The token's (exp, iat, nbf) once they hold at `now`; raise if they do not."""
        exp = _number(payload, "exp")
        iat = _number(payload, "iat")
        nbf = _number(payload, "nbf")
        if exp is None or iat is None:  # pragma: no cover - PyJWT's "require" checked them
            raise AuthenticationError("missing_time_claim")
        times = (exp, iat, nbf)
        reason = time_failure(times, now, self._settings.leeway_seconds)
        if reason is not None:
            raise AuthenticationError(reason)
        return times


def jwks_source(settings: IdentitySettings) -> str:
    """Where a provider's keys come from, as an operator would look for it."""
    if settings.jwks_file is not None:
        return f"identity.jwks_file {settings.jwks_file}"
    return f"identity.jwks_url {settings.jwks_url}"


def bearer_token(headers: MultiMapping[str], settings: IdentitySettings) -> str | None:
    """The one bearer token in `headers`; None when there is none and none is required."""
    values = headers.getall("Authorization", [])
    if not values:
        if settings.require:
            raise AuthenticationError("missing_token", error=None)
        return None
    if len(values) > 1:
        raise AuthenticationError("ambiguous_authorization", error="invalid_request")
    header = values[0]
    if len(header.encode("utf-8", "surrogatepass")) > settings.max_token_bytes:
        raise AuthenticationError("token_too_large", error="invalid_request")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise AuthenticationError("not_bearer", error="invalid_request")
    if not token or " " in token:
        raise AuthenticationError("malformed", error="invalid_request")
    return token


class IssuerRouter:
    """Several identity providers: a token is verified only with its own provider's keys.

    The unverified `iss` claim only picks the provider; that provider's authenticator then
    verifies everything, `iss` included, against its own JWKS. So a key of provider A can never
    sign for a subject of provider B, whatever the token claims.
    """

    def __init__(
        self, settings: IdentitySettings, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        """One JwtAuthenticator per provider: identity.issuers first, then other_providers."""
        self._settings = settings
        self._providers = [JwtAuthenticator(settings, session=session)]
        for other in settings.other_providers:
            alone = settings.model_copy(
                update={
                    "issuers": other.issuers,
                    "jwks_file": other.jwks_file,
                    "jwks_url": other.jwks_url,
                    "other_providers": (),
                }
            )
            self._providers.append(JwtAuthenticator(alone, session=session))
        self._by_issuer = {
            issuer: provider
            for provider, source in zip(
                self._providers, (settings, *settings.other_providers), strict=True
            )
            for issuer in source.issuers
        }

    @property
    def providers(self) -> tuple[JwtAuthenticator, ...]:
        """One authenticator per identity provider (for metrics)."""
        return tuple(self._providers)

    async def authenticate(self, headers: MultiMapping[str], *, now: float) -> Caller:
        """Route the bearer token to the provider that lists its `iss`; anonymous if none."""
        token = bearer_token(headers, self._settings)
        if token is None:
            return Caller.anonymous
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError("malformed") from None
        issuer = claims.get("iss")
        provider = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise AuthenticationError("missing_iss" if issuer is None else "wrong_issuer")
        return await provider.verify_token(token, now=now)

    async def verified_claims(self, token: str, *, now: float) -> dict[str, Any]:
        """Every claim of `token`, verified by the provider that lists its `iss` (never cached)."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthenticationError("malformed") from None
        issuer = claims.get("iss")
        provider = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise AuthenticationError("missing_iss" if issuer is None else "wrong_issuer")
        return await provider.verified_claims(token, now=now)

    def jwks_caches(self) -> tuple[JwksCache, ...]:
        """Every provider's key cache, identity.issuers' first."""
        return tuple(cache for provider in self._providers for cache in provider.jwks_caches())

    async def close(self) -> None:
        """Close every provider's HTTP session."""
        for provider in self._providers:
            await provider.close()


def build_authenticator(
    settings: IdentitySettings,
    *,
    session: aiohttp.ClientSession | None = None,
) -> Authenticator:
    """The seam: choose the implementation for `settings.mode` (only "jwt" today)."""
    if settings.mode != "jwt":  # pragma: no cover - Literal allows only "jwt"
        raise NotImplementedError(settings.mode)
    if settings.other_providers:
        return IssuerRouter(settings, session=session)
    return JwtAuthenticator(settings, session=session)

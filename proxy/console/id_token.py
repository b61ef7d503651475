"""The ID token of a console login: verified by the proxy's own JWT code, then its nonce checked.

The ID token is issued for the console's client id (its `aud`), by an issuer the proxy trusts,
signed by a key of that issuer's JWKS: the same verifier as every other token, with the client
id as audience. Its `nonce` must be the one this browser's login started with, so an ID token
captured from another login cannot be slipped into this one. Who is logged in and whether they
are an administrator are decided from the access token (AdminVerifier), not from this one.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from proxy.identity.authenticator import IssuerRouter, JwtAuthenticator
from proxy.identity.errors import AuthenticationError
from proxy.identity.subject import Subject

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.identity.settings import IdentitySettings

__all__ = ["IdTokenVerifier"]


class IdTokenVerifier:
    """Verifies ID tokens for `client_id` with the identity providers of `identity:`."""

    def __init__(self, current_identity: Callable[[], IdentitySettings], client_id: str) -> None:
        self._current_identity = current_identity
        self._client_id = client_id
        self._identity: IdentitySettings | None = None
        self._verifier: IssuerRouter | JwtAuthenticator | None = None
        self._retired: list[IssuerRouter | JwtAuthenticator] = []

    def _current(self) -> IssuerRouter | JwtAuthenticator:
        identity = self._current_identity()
        if self._verifier is None or identity != self._identity:
            if self._verifier is not None:
                self._retired.append(self._verifier)
            self._identity = identity
            settings = identity.model_copy(update={"audience": self._client_id, "require": True})
            self._verifier = (
                IssuerRouter(settings) if settings.other_providers else JwtAuthenticator(settings)
            )
        return self._verifier

    async def check(self, token: str, *, nonce: str, subject: str, now: float) -> None:
        """AuthenticationError unless `token` verifies, has `nonce` and names `subject`."""
        claims = await self._current().verified_claims(token, now=now)
        sent = claims.get("nonce")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), nonce.encode()):
            raise AuthenticationError("id_token_nonce")
        if str(Subject(claims["iss"], claims["sub"])) != subject:
            raise AuthenticationError("id_token_subject")

    async def close(self) -> None:
        """Close the JWKS fetchers' HTTP sessions."""
        for verifier in (*self._retired, *([self._verifier] if self._verifier else [])):
            await verifier.close()

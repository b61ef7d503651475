"""Who may use the admin API: a verified token from a trusted IdP that carries the admin role.

The token is verified by the proxy's own JWT code (proxy.identity: same JWKS handling, algorithms,
issuer routing, clock leeway), with the admin audience; then `admin_api.role_claim` must contain
`admin_api.role`. The role says nothing about PHI: an administrator reads PHI on the proxy port
only through a grant, like anyone else, and a grant never makes anyone an administrator.

Every refusal is one of two answers: 401 (no token, or one that does not verify: which check
failed goes to the log only) or 403 (a valid token without the role).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxy.identity.authenticator import IssuerRouter, JwtAuthenticator, bearer_token
from proxy.identity.subject import Subject

if TYPE_CHECKING:
    from collections.abc import Callable

    from multidict import MultiMapping

    from proxy.admin_api.settings import AdminApiSettings
    from proxy.identity.settings import IdentitySettings

__all__ = ["AdminIdentity", "AdminVerifier", "NotAnAdmin", "has_role"]

_log = logging.getLogger("phi_proxy.admin_api")
_MAX_JTI = 256


class NotAnAdmin(Exception):
    """A valid token that lacks the admin role (403)."""


@dataclass(frozen=True, slots=True)
class AdminIdentity:
    """A verified administrator: the subject changes are audited under, and the token's jti."""

    subject: Subject
    token_id: str | None


def _claim(claims: dict[str, Any], path: str) -> object:
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def has_role(claims: dict[str, Any], role_claim: str, role: str) -> bool:
    """True when the claim at `role_claim` (dotted path) is `role` or a list holding it."""
    value = _claim(claims, role_claim)
    if isinstance(value, str):
        return value == role
    if isinstance(value, list):
        return any(isinstance(item, str) and item == role for item in value)
    return False


class AdminVerifier:
    """Verifies admin bearer tokens against the identity providers of the `identity:` section.

    `current_identity` gives the proxy's identity settings now: when a reload changes them
    (an issuer removed, a JWKS moved), the next admin request is verified with the new ones,
    exactly as the proxy port's are.
    """

    def __init__(
        self, current_identity: Callable[[], IdentitySettings], api: AdminApiSettings
    ) -> None:
        self._current_identity = current_identity
        self._api = api
        self._identity: IdentitySettings | None = None
        self._settings: IdentitySettings
        self._verifier: IssuerRouter | JwtAuthenticator | None = None
        self._retired: list[IssuerRouter | JwtAuthenticator] = []

    def _current(self) -> tuple[IdentitySettings, IssuerRouter | JwtAuthenticator]:
        identity = self._current_identity()
        if self._verifier is None or identity != self._identity:
            if self._verifier is not None:
                self._retired.append(self._verifier)  # a request may still be using it
            self._identity = identity
            self._settings = identity.model_copy(
                update={"audience": self._api.audience or identity.audience, "require": True}
            )
            self._verifier = (
                IssuerRouter(self._settings)
                if self._settings.other_providers
                else JwtAuthenticator(self._settings)
            )
        return self._settings, self._verifier

    async def admin(self, headers: MultiMapping[str], *, now: float) -> AdminIdentity:
        """The administrator behind these headers; AuthenticationError (401) or NotAnAdmin."""
        settings, _verifier = self._current()
        token = bearer_token(headers, settings)
        if token is None:  # pragma: no cover - require=True makes bearer_token raise instead
            raise NotAnAdmin
        identity, _expires_at = await self.admin_token(token, now=now)
        return identity

    async def admin_token(self, token: str, *, now: float) -> tuple[AdminIdentity, float]:
        """The administrator `token` names and when it expires (epoch seconds).

        For the console, which receives the token from the IdP's token endpoint rather than in
        a header: the same checks as `admin`; AuthenticationError or NotAnAdmin.
        """
        _settings, verifier = self._current()
        claims = await verifier.verified_claims(token, now=now)
        subject = Subject(claims["iss"], claims["sub"])
        if not has_role(claims, self._api.role_claim, self._api.role):
            _log.warning(
                "admin api refused: token lacks the admin role",
                extra={"fields": {"subject": str(subject), "role_claim": self._api.role_claim}},
            )
            raise NotAnAdmin
        jti = claims.get("jti")
        identity = AdminIdentity(
            subject, jti if isinstance(jti, str) and len(jti) <= _MAX_JTI else None
        )
        return identity, float(claims["exp"])

    async def close(self) -> None:
        """Close the JWKS fetchers' HTTP sessions."""
        for verifier in (*self._retired, *([self._verifier] if self._verifier else [])):
            await verifier.close()

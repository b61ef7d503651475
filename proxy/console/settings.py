"""The `admin_api.console:` section: the access review console and the IdP client it logs in with.

Off by default. The console is served on the admin API's listener under /console/ (never the
client port), so it inherits that listener's TLS and mTLS. People log in at the identity provider
with the OpenID Connect authorization-code flow (PKCE S256, state, nonce); the access token that
comes back must be an admin token exactly as the admin API requires (admin_api.role in
admin_api.role_claim, admin_api.audience or identity.audience).
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from yarl import URL

from keys.config_file import ConfigPath

__all__ = ["ConsoleSettings", "OidcClientSettings"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url(value: str, setting: str, *, allow_http_loopback: bool = True) -> str:
    url = URL(value)
    if url.scheme not in ("https", "http") or not url.host:
        raise ValueError(f"console.oidc.{setting} {value!r} is not an absolute http(s) URL")
    if url.scheme == "http" and not (allow_http_loopback and _is_loopback(url.host)):
        raise ValueError(
            f"console.oidc.{setting} {value!r} is plain http to a host that is not this machine: "
            "codes, tokens and session cookies would cross the network in clear text; use https://"
        )
    if url.fragment:
        raise ValueError(f"console.oidc.{setting} {value!r} must not have a #fragment")
    return value


class OidcClientSettings(BaseModel):
    """The console's client registration at the identity provider (authorization-code + PKCE)."""

    model_config = _FROZEN
    authorization_endpoint: str = Field(
        description="The IdP's authorization endpoint (from its /.well-known/openid-configuration)."
    )
    token_endpoint: str = Field(description="The IdP's token endpoint (same document).")
    client_id: str = Field(min_length=1, description="The console's client id at the IdP.")
    client_secret_file: ConfigPath | None = Field(
        None,
        description="File holding the client secret (confidential clients); omit for a public "
        "client (PKCE only). Read once at start; keep it 0600.",
    )
    redirect_uri: str = Field(
        description="Where the IdP sends the browser back: the console's public address plus "
        "/console/callback, e.g. https://phi-admin.example.org/console/callback; registered "
        "exactly like this at the IdP. Its origin is the only Origin a console form may come from.",
    )
    scopes: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        ("openid",),
        description="Scopes asked for; must include openid. Add what your IdP needs for the "
        "access token to carry the admin role and audience (e.g. an API scope in Entra ID).",
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=60, description="How long to wait for the token endpoint."
    )

    @field_validator("authorization_endpoint", "token_endpoint")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        return _url(value, info.field_name or "endpoint")

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, value: str) -> str:
        _url(value, "redirect_uri")
        if not URL(value).path.endswith("/console/callback"):
            raise ValueError(
                f"console.oidc.redirect_uri {value!r} must end in /console/callback (where the "
                "console receives the IdP's answer)"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("console.oidc.scopes must include openid")
        if any(not s or " " in s for s in value):
            raise ValueError("console.oidc.scopes: each scope is one word without spaces")
        return value

    @property
    def origin(self) -> str:
        """The console's public origin (scheme://host[:port]) as browsers send it in Origin."""
        return str(URL(self.redirect_uri).origin())


class ConsoleSettings(BaseModel):
    """The web console on the admin API listener: grants, access review, break-glass, incidents."""

    model_config = _FROZEN
    enabled: bool = Field(default=False, description="Serve the console; off by default.")
    oidc: OidcClientSettings | None = Field(
        None, description="The identity provider client the console logs people in with."
    )
    session_minutes: int = Field(
        60,
        ge=1,
        le=720,
        description="Longest a console login lasts; it also ends when the admin token expires.",
    )

    @model_validator(mode="after")
    def _oidc_given(self) -> Self:
        if self.enabled and self.oidc is None:
            raise ValueError(
                "admin_api.console.enabled is true but console.oidc is missing: the console "
                "needs the identity provider's endpoints and its client id to log anyone in"
            )
        return self

"""The `identity:` section of the config: who may issue tokens for us, and how to check them."""

from __future__ import annotations

from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from keys.config_file import ConfigPath

__all__ = ["ALLOWED_ALGORITHMS", "IdentitySettings", "JwtAlgorithm", "OtherProvider"]

JwtAlgorithm = Literal["RS256", "ES256", "EdDSA"]
ALLOWED_ALGORITHMS: tuple[JwtAlgorithm, ...] = ("RS256", "ES256", "EdDSA")
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class _KeySource(BaseModel):
    """Issuers and the one JWKS whose keys may sign for them (one identity provider)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuers: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        description="Token issuers (`iss`) accepted, exactly as they appear in tokens. Every key "
        "of this JWKS can sign for every issuer listed here: list several only for one identity "
        "provider; put another organisation under identity.other_providers.",
    )
    jwks_file: ConfigPath | None = Field(
        default=None,
        description="JWKS file with the issuer's public keys (relative to the config file). "
        "Give exactly one of jwks_file and jwks_url.",
    )
    jwks_url: str | None = Field(
        default=None,
        description="HTTPS URL of the issuer's JWKS (plain http only for localhost). "
        "Give exactly one of jwks_file and jwks_url.",
    )

    @field_validator("issuers")
    @classmethod
    def _issuers_are_clean(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for issuer in value:
            if not issuer or "|" in issuer or not issuer.isprintable():
                raise ValueError("each issuer must be non-empty printable text without '|'")
        if len(set(value)) != len(value):
            raise ValueError("an issuer is listed twice")
        return value

    @field_validator("jwks_url")
    @classmethod
    def _https_only(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme == "https" and parts.hostname:
            return value
        if parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS:
            return value
        raise ValueError(
            "jwks_url must be an https:// URL (plain http is allowed only for localhost)"
        )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> Self:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("give exactly one of jwks_file and jwks_url")
        return self


class OtherProvider(_KeySource):
    """Another identity provider: its JWKS signs only for its own issuers."""


class IdentitySettings(_KeySource):
    """How bearer tokens are verified. Only asymmetric signatures; every claim that matters."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: Literal["jwt"] = Field(
        default="jwt",
        description="How callers are identified. Only 'jwt' (OIDC bearer JWT checked against a "
        "JWKS) exists today; token introspection and trusted headers are reserved names.",
    )
    audience: str = Field(
        min_length=1,
        description="The audience (`aud`) a token must be issued for, e.g. this proxy's client id.",
    )
    algorithms: Annotated[tuple[JwtAlgorithm, ...], Field(min_length=1)] = Field(
        default=ALLOWED_ALGORITHMS,
        description="Signature algorithms accepted (RS256, ES256, EdDSA). HMAC (HS*) and 'none' "
        "are never accepted: a public key must never double as a shared secret.",
    )
    jwks_refresh_min_interval: float = Field(
        default=60.0,
        ge=1.0,
        le=86400.0,
        description="Seconds between JWKS reloads triggered by an unknown key id; bounds how often "
        "forged tokens can make us fetch.",
    )
    jwks_max_age_seconds: float = Field(
        default=300.0,
        ge=10.0,
        le=86400.0,
        description="Reload the JWKS when the keys held are this old, even if no unknown key id "
        "was seen, so a key the IdP removed (compromised) stops verifying within this time. "
        "A failed reload keeps the previous keys until they are twice this old (then every token "
        "gets 401); /readyz reports jwks: false meanwhile.",
    )
    jwks_fetch_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Timeout for one JWKS download (jwks_url only)."
    )
    leeway_seconds: int = Field(
        default=30, ge=0, le=300, description="Clock skew tolerated on exp/nbf/iat, in seconds."
    )
    require: bool = Field(
        default=False,
        description="When true, a request without a bearer token is refused with 401 instead "
        "of being served as anonymous (PHI masked).",
    )
    max_token_bytes: int = Field(
        default=8192,
        ge=512,
        le=65536,
        description="Longest Authorization header accepted; longer ones are refused unparsed.",
    )
    other_providers: tuple[OtherProvider, ...] = Field(
        default=(),
        description="Further identity providers, each with its own issuers and JWKS. A token is "
        "checked only against the keys of the provider that lists its `iss`, so one provider's "
        "keys can never sign for another's subjects.",
    )

    @field_validator("algorithms", mode="before")
    @classmethod
    def _refuse_symmetric(cls, value: object) -> object:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list | tuple):
            for item in items:
                if isinstance(item, str) and (item.upper().startswith("HS") or item == "none"):
                    raise ValueError(
                        f"algorithm {item!r} is refused: only RS256, ES256 and EdDSA can be used "
                        "(HMAC and 'none' would let anyone holding the public key forge tokens)"
                    )
        return value

    @model_validator(mode="after")
    def _each_issuer_once(self) -> Self:
        listed = [*self.issuers, *(i for p in self.other_providers for i in p.issuers)]
        if len(set(listed)) != len(listed):
            raise ValueError(
                "an issuer is listed by two providers (identity.issuers and "
                "identity.other_providers): each issuer must belong to exactly one JWKS"
            )
        return self

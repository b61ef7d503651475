"""The `scim:` section: the SCIM 2.0 listener, its bearer secret, and what users and groups mean.

Off by default. The listener has its own address (never the client port): an identity provider
that holds the secret can create grants for every mapped group, so it must be reachable by the
IdP only. The secret comes from a file (mode 0600) or an environment variable; the proxy keeps
only its hash (proxy.scim.secret).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from keys.config_file import ConfigPath, relative_to_config
from keys.keyring import is_practice_id
from keys.token_format import is_field_class
from proxy.grants.durations import parse_duration
from proxy.server_settings import ListenTls

__all__ = ["DEFAULT_GROUP_TTL", "ScimGroup", "ScimSettings"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
DEFAULT_GROUP_TTL = timedelta(days=30)
Port = Annotated[int, Field(ge=0, le=65535)]


class ScimGroup(BaseModel):
    """The grant a member of one IdP group holds while the membership lasts."""

    model_config = _FROZEN
    practice: str = Field(description="Practice id the members may read (as in phi-keys list).")
    classes: tuple[str, ...] | None = Field(
        None, description="Field classes the grant covers; omit for every class."
    )
    ttl: timedelta = Field(
        DEFAULT_GROUP_TTL,
        description="Lifetime of each grant (e.g. '30d'); renewed when the IdP adds the member "
        "again. At most grants.max_ttl.",
    )

    @field_validator("practice")
    @classmethod
    def _practice_id(cls, value: str) -> str:
        if not is_practice_id(value):
            raise ValueError(f"{value!r} is not a practice id (as `phi-keys list` prints them)")
        return value

    @field_validator("classes")
    @classmethod
    def _class_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            if not value:
                raise ValueError("classes is empty; omit it to grant every field class")
            for name in value:
                if not is_field_class(name):
                    raise ValueError(f"{name!r} is not a field class name (as in fields.classes)")
        return value

    @field_validator("ttl", mode="before")
    @classmethod
    def _parse_ttl(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return timedelta(seconds=value)
        return value


class ScimSettings(BaseModel):
    """The SCIM 2.0 service provider (RFC 7643/7644) that identity providers push users to."""

    model_config = _FROZEN
    enabled: bool = Field(default=False, description="Serve SCIM; off by default.")
    host: str = Field("127.0.0.1", description="SCIM address: reachable by the IdP only.")
    port: Port = Field(9443, description="SCIM port; never the client port (listen.port).")
    tls: ListenTls | None = Field(None, description="Serve HTTPS; omit for plain HTTP.")
    secret_file: Annotated[
        Path | None,
        Field(
            description="File holding the bearer secret the "
            "IdP sends (mode 0600; at least 32 characters)."
        ),
    ] = None
    secret_env: str | None = Field(
        None, description="Environment variable holding the bearer secret (instead of a file)."
    )
    issuer: str | None = Field(
        None,
        description="The identity.issuers value whose subjects SCIM users are: a user becomes "
        "ISSUER|<subject_from attribute>.",
    )
    subject_from: Literal["externalId", "userName"] = Field(
        "externalId",
        description="Which SCIM attribute holds the token's `sub`: externalId (Okta, Entra ID "
        "object id) or userName.",
    )
    directory: ConfigPath = Field(
        Path("scim-directory.sqlite3"),
        validate_default=True,  # relative to the config file, like every other path
        description="SQLite file of SCIM bookkeeping (user names, active flag, unknown groups); "
        "grants themselves live in the grant store.",
    )
    groups: dict[str, ScimGroup] = Field(
        default_factory=dict,
        description="IdP group display name -> the grant its members hold. Other groups are "
        "accepted and ignored (check-config lists the ones the IdP sent).",
    )

    @field_validator("secret_file")
    @classmethod
    def _relative(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else relative_to_config(value, info)

    @field_validator("host")
    @classmethod
    def _host_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("scim.host is empty; write 127.0.0.1, or the address the IdP reaches")
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> Self:
        if not self.enabled:
            return self
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError(
                "scim is enabled: set exactly one of scim.secret_file (a file of mode 0600 "
                "holding the bearer secret the IdP sends) or scim.secret_env"
            )
        if not self.issuer or "|" in self.issuer:
            raise ValueError(
                "scim is enabled: set scim.issuer to the identity.issuers value of the IdP "
                "that pushes users, so a SCIM user maps to the subject ISSUER|SUB its tokens carry"
            )
        return self

"""The `admin_api:` section: the admin API's own listener, and who counts as an administrator.

Off by default. It is a listener of its own, not the admin (health) port: load balancers and
kubelets must reach /readyz, and nothing that reaches /readyz should be able to change grants.
An administrator is a caller whose token, from an identity provider the proxy already trusts
(`identity:`), carries `role` in its `role_claim`. Holding that role grants no PHI: admin and
PHI access are separate decisions, made from separate sources (role claim vs grant store).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from keys.config_file import ConfigPath  # noqa: TC001 - pydantic reads it at runtime
from proxy.console.settings import ConsoleSettings
from proxy.server_settings import ListenTls

__all__ = ["AdminApiSettings", "AdminApiTls"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
Port = Annotated[int, Field(ge=0, le=65535)]


class AdminApiTls(ListenTls):
    """HTTPS on the admin API, optionally requiring a client certificate (mTLS)."""

    client_ca_file: ConfigPath | None = Field(
        None,
        description="PEM CA bundle: when set, every connection must present a client "
        "certificate it signed (mTLS), in addition to the admin bearer token.",
    )


class AdminApiSettings(BaseModel):
    """JSON over HTTP to manage grants, read the access review and the audit report."""

    model_config = _FROZEN
    enabled: bool = Field(default=False, description="Serve the admin API; off by default.")
    host: str = Field("127.0.0.1", description="Address; reachable by administrators only.")
    port: Port = Field(9091, description="Port; never listen.port, admin.port or scim.port.")
    tls: AdminApiTls | None = Field(None, description="Serve HTTPS (and mTLS); omit for HTTP.")
    role_claim: str = Field(
        "roles",
        description="Token claim that lists the caller's roles: 'roles' (Entra ID app roles, "
        "Keycloak with a mapper), 'groups' (Okta), or a dotted path such as "
        "'realm_access.roles' (Keycloak's default).",
    )
    role: str = Field(
        "phi-admin",
        min_length=1,
        description="The value role_claim must contain for the caller to be an administrator.",
    )
    audience: str | None = Field(
        None,
        description="The `aud` admin tokens must carry; omit to use identity.audience. A client "
        "id of its own keeps a stolen PHI-reading token from ever being an admin token.",
    )

    console: ConsoleSettings = Field(
        default_factory=ConsoleSettings,
        description="The access review console: web pages under /console/ on this listener "
        "for compliance officers, who log in at the identity provider (off by default).",
    )

    def describe(self, identity_audience: str) -> str:
        """One line for `phi-proxy check-config`: where it listens and who is an admin."""
        if not self.enabled:
            return "off"
        tls = self.tls
        scheme = "http" if tls is None else "https"
        mtls = " (client certificates required)" if tls and tls.client_ca_file else ""
        console = ""
        if self.console.enabled and self.console.oidc is not None:
            console = f"; console at {self.console.oidc.origin}/console/"
        return (
            f"{scheme}://{self.host}:{self.port}/api/v1{mtls}, admins: tokens for audience "
            f"{self.audience or identity_audience} whose {self.role_claim} holds {self.role!r}"
            f"{console}"
        )

    @field_validator("host")
    @classmethod
    def _host_given(cls, value: str) -> str:
        if not value.strip():
            raise ValueError(
                "admin_api.host is empty; write 127.0.0.1, or the address administrators reach"
            )
        return value

    @field_validator("role_claim")
    @classmethod
    def _claim_path(cls, value: str) -> str:
        if not value or any(not part for part in value.split(".")):
            raise ValueError(
                f"admin_api.role_claim {value!r} is not a claim name or dotted path, e.g. roles "
                "or realm_access.roles"
            )
        return value

    @model_validator(mode="after")
    def _console_needs_the_api(self) -> Self:
        if self.console.enabled and not self.enabled:
            raise ValueError(
                "admin_api.console.enabled is true but admin_api.enabled is false: the console "
                "is served on the admin API's listener; set admin_api.enabled: true"
            )
        return self

    @model_validator(mode="after")
    def _audience_given(self) -> Self:
        if self.audience is not None and not self.audience.strip():
            raise ValueError("admin_api.audience is empty; omit it to use identity.audience")
        return self

"""The whole YAML config file as one frozen pydantic model.

Each section's model lives beside the code it configures; this module only assembles them and
turns validation errors into lines that name the YAML path (`upstream.url: …`). Secrets are
never echoed back: errors carry the path and the rule, not the value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from keys.config_file import describe_validation_error, read_config_mapping
from keys.errors import ConfigError
from keys.settings import KeySettings
from proxy.audit.settings import AuditSettings
from proxy.grants.settings import GrantSettings
from proxy.identity.settings import IdentitySettings
from proxy.server_settings import (
    AdminSettings,
    HeaderSettings,
    LimitsSettings,
    ListenSettings,
    UpstreamSettings,
)
from proxy.transform.settings import FieldSettings, WriteRoutesSettings

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["LoggingSettings", "Settings", "load_settings"]


class LoggingSettings(BaseModel):
    """Where and how much the proxy logs (always JSON lines on stderr)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Minimum level; access lines are logged at info."
    )


class Settings(BaseModel):
    """Everything phi-proxy reads from its config file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: ListenSettings = Field(default_factory=ListenSettings, description="Client listener.")
    admin: AdminSettings = Field(default_factory=AdminSettings, description="Admin listener.")
    upstream: UpstreamSettings = Field(description="The portal behind the proxy.")
    limits: LimitsSettings = Field(default_factory=LimitsSettings, description="Size caps.")
    headers: HeaderSettings = Field(
        default_factory=HeaderSettings, description="Trusted proxies and stripped headers."
    )
    identity: IdentitySettings = Field(description="How callers prove who they are.")
    grants: GrantSettings = Field(description="Where grants are stored and their limits.")
    keys: KeySettings = Field(description="Keystore and key-encryption key.")
    fields: FieldSettings = Field(description="Field classes, masks and selectors.")
    write_routes: WriteRoutesSettings = Field(
        default_factory=lambda: WriteRoutesSettings(()),
        description="Routes whose request bodies carry PHI to encrypt on the way in.",
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    audit: AuditSettings = Field(
        default_factory=dict,  # validated, so relative paths resolve against the config file
        validate_default=True,
        description="The tamper-evident audit trail of every disclosure (on by default).",
    )


def load_settings(path: Path) -> Settings:
    """Read and validate the whole config file, or raise ConfigError listing every problem."""
    data = read_config_mapping(path)
    try:
        return Settings.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        detail = describe_validation_error(exc)
        raise ConfigError(f"{path}: invalid configuration\n{detail}") from None

"""The whole YAML config file as one frozen pydantic model.

Each section's model lives beside the code it configures; this module only assembles them and
turns validation errors into lines that name the YAML path (`upstream.url: …`). Secrets are
never echoed back: errors carry the path and the rule, not the value.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from keys.config_file import describe_validation_error, read_config_mapping
from keys.errors import ConfigError
from keys.settings import FileKekSettings, KeySettings
from keys.usage import usage_path
from proxy.admin_api.settings import AdminApiSettings
from proxy.audit.settings import AuditSettings
from proxy.grants.break_glass_settings import BreakGlassSettings
from proxy.grants.settings import GrantSettings
from proxy.identity.settings import IdentitySettings
from proxy.scim.settings import ScimSettings
from proxy.server_settings import (
    AdminSettings,
    HeaderSettings,
    LimitsSettings,
    ListenSettings,
    UpstreamSettings,
)
from proxy.transform.settings import FieldSettings, ReadRoutesSettings, WriteRoutesSettings

__all__ = ["LoggingSettings", "Settings", "config_warnings", "load_settings", "upstream_in_clear"]

#: Files the proxy's stores and locks create beside a configured file.
_SIBLING_SUFFIXES = ("", ".lock", ".head", "-wal", "-shm")
_AUDIT_FILE_EXAMPLES = {
    "audit.path": "audit.jsonl",
    "audit.key_file": "audit.key",
    "audit.signing_key_file": "audit-signing.pem",
}
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})  # noqa: S104 - names, not a bind


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
    read_routes: ReadRoutesSettings = Field(
        default_factory=lambda: ReadRoutesSettings(()),
        description="Routes whose answers belong to the practice their path names: it decides "
        "who may read plaintext in records that name no practice (legacy data, FHIR).",
    )
    logging: LoggingSettings = Field(default_factory=LoggingSettings, description="Logging.")
    audit: AuditSettings = Field(
        default_factory=dict,  # validated, so relative paths resolve against the config file
        validate_default=True,
        description="The tamper-evident audit trail of every disclosure (on by default).",
    )

    scim: ScimSettings = Field(
        default_factory=dict,  # validated, so a relative directory resolves against the config
        validate_default=True,
        description="SCIM 2.0 service provider: the IdP pushes joins and leaves (off by default).",
    )

    admin_api: AdminApiSettings = Field(
        default_factory=AdminApiSettings,
        description="Admin API: grants, access review and audit report as JSON over HTTP, for "
        "callers whose token carries the admin role (off by default).",
    )

    @model_validator(mode="after")
    def _admin_api_apart(self) -> Self:
        api = self.admin_api
        if not api.enabled:
            return self
        others = [
            ("listen.port", self.listen.host, self.listen.port),
            ("admin.port", self.admin.host, self.admin.port),
        ]
        if self.scim.enabled:
            others.append(("scim.port", self.scim.host, self.scim.port))
        for setting, host, port in others:
            if port and port == api.port and _hosts_overlap(api.host, host):
                raise ValueError(
                    f"admin_api.port and {setting} are both {port} on overlapping addresses: the "
                    "admin API (which can create grants) must have a port of its own, reachable "
                    "by administrators only; e.g. admin_api.port: 9091"
                )
        return self

    break_glass: BreakGlassSettings = Field(
        default_factory=BreakGlassSettings,
        description="Emergency access: a caller whose token carries a configured claim may "
        "open a short, audited grant with X-PHI-Break-Glass (off by default).",
    )

    @model_validator(mode="after")
    def _break_glass_bounded(self) -> Self:
        glass = self.break_glass
        if not glass.enabled:
            return self
        if not self.audit.enabled:
            raise ValueError(
                "break_glass.enabled needs audit.enabled: every emergency disclosure must leave "
                "evidence; turn the audit trail on, or break_glass off"
            )
        unknown = [name for name in glass.classes if name not in self.fields.classes]
        if unknown:
            raise ValueError(
                f"break_glass.classes names {', '.join(unknown)}, not defined under "
                f"fields.classes ({', '.join(sorted(self.fields.classes)) or 'none'}); list "
                "only classes the config defines"
            )
        if glass.max_ttl > self.grants.max_ttl:
            raise ValueError(
                "break_glass.max_ttl is longer than grants.max_ttl, so every emergency grant "
                "would be refused; shorten break_glass.max_ttl (e.g. 1h)"
            )
        return self

    @model_validator(mode="after")
    def _scim_apart(self) -> Self:
        scim = self.scim
        if not scim.enabled:
            return self
        for setting, host, port in (
            ("listen.port", self.listen.host, self.listen.port),
            ("admin.port", self.admin.host, self.admin.port),
        ):
            if port and port == scim.port and _hosts_overlap(scim.host, host):
                raise ValueError(
                    f"scim.port and {setting} are both {port} on overlapping addresses: the SCIM "
                    "listener (whose secret can create grants) must have a port of its own, "
                    "reachable by the identity provider only; e.g. scim.port: 9443"
                )
        for name, group in scim.groups.items():
            if group.ttl > self.grants.max_ttl:
                raise ValueError(
                    f"scim.groups[{name!r}].ttl is longer than grants.max_ttl, so every grant for "
                    "that group would be refused; shorten the ttl (the IdP's next sync renews it)"
                )
        if not self.grants.is_postgres and _same_or_sibling(
            scim.directory, self.grants.sqlite_path
        ):
            raise ValueError(
                "scim.directory is the grant store's file; give it a file of its own, e.g. "
                "scim-directory.sqlite3 beside the config"
            )
        return self

    @model_validator(mode="after")
    def _admin_port_apart(self) -> Self:
        port = self.admin.port
        if port and port == self.listen.port and _hosts_overlap(self.admin.host, self.listen.host):
            raise ValueError(
                f"admin.port and listen.port are both {port} on overlapping addresses "
                f"({self.admin.host} and {self.listen.host}), so client requests could reach the "
                "admin listener (and probes the proxy); give admin.port its own port, e.g. 9090"
            )
        return self

    @model_validator(mode="after")
    def _audit_files_apart(self) -> Self:
        guarded = _guarded_files(self)
        for setting, path in _audit_files(self):
            for other, protected in guarded:
                if _same_or_sibling(path, protected):
                    raise ValueError(
                        f"{setting} ({path}) is the same file as {other} ({protected}) or one of "
                        "its lock/journal files; the audit trail would append to it and make it "
                        f"unusable. Point {setting} at a file of its own, e.g. "
                        f"{_AUDIT_FILE_EXAMPLES[setting]} beside the config"
                    )
        return self


def _hosts_overlap(first: str, second: str) -> bool:
    """True if listeners on these two hosts could share a port (same or wildcard address)."""
    if first in _WILDCARD_HOSTS or second in _WILDCARD_HOSTS or first == second:
        return True
    return _is_loopback(first) and _is_loopback(second) and "localhost" in (first, second)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _audit_files(settings: Settings) -> list[tuple[str, Path]]:
    """The audit files the trail writes (or reads a secret from) with these settings."""
    audit = settings.audit
    files = []
    if audit.sink == "file":
        files.append(("audit.path", audit.path))
    if audit.key_env is None:
        files.append(("audit.key_file", audit.key_file))
    if audit.signing_key_file is not None:
        files.append(("audit.signing_key_file", audit.signing_key_file))
    return files


def _guarded_files(settings: Settings) -> list[tuple[str, Path]]:
    """Files that must never be written by the audit trail: keys, stores, JWKS."""
    keys = settings.keys
    files = [("keys.keystore", keys.keystore), ("keys.usage_file", usage_path(keys))]
    if isinstance(keys.kek, FileKekSettings):
        files.append(("keys.kek.path", keys.kek.path))
    if not settings.grants.is_postgres:
        files.append(("grants.store", settings.grants.sqlite_path))
    if settings.identity.jwks_file is not None:
        files.append(("identity.jwks_file", settings.identity.jwks_file))
    files.extend(
        (f"identity.other_providers[{number}].jwks_file", provider.jwks_file)
        for number, provider in enumerate(settings.identity.other_providers)
        if provider.jwks_file is not None
    )
    return files


def _same_or_sibling(path: Path, protected: Path) -> bool:
    """True if `path` is `protected` or a lock/journal file of it, or the other way round."""
    mine = {_canonical(path, suffix) for suffix in _SIBLING_SUFFIXES}
    theirs = {_canonical(protected, suffix) for suffix in _SIBLING_SUFFIXES}
    if _canonical(path, "") in theirs or _canonical(protected, "") in mine:
        return True
    try:  # hard links, or two spellings the resolver cannot see through
        return path.samefile(protected)
    except OSError:
        return False


def _canonical(path: Path, suffix: str) -> Path:
    return Path(str(path) + suffix).resolve()


def upstream_in_clear(settings: Settings) -> bool:
    """True when the portal is reached over plain http on a host that is not loopback."""
    url = settings.upstream.url
    return url.scheme == "http" and not _is_loopback(url.host or "")


def config_warnings(settings: Settings) -> list[str]:
    """Valid but probably unintended settings: check-config prints them, serve logs them."""
    fields = settings.fields
    warnings = []
    used = {selector.field_class for selector in fields.selectors}
    if not fields.selectors:
        warnings.append(
            "fields.selectors is empty: no field is encrypted, decrypted or masked, so every "
            "value, PHI included, passes through as sent; add a selector for each PHI field "
            "(see config/proxy.example.yaml)"
        )
        if settings.write_routes.root:
            warnings.append(
                f"write_routes lists {len(settings.write_routes.root)} route(s) but no selector "
                "says which fields to encrypt, so their bodies reach the portal in plain text; "
                "add selectors under fields.selectors"
            )
    unused = sorted(set(fields.classes) - used)
    if unused and fields.selectors:
        warnings.append(
            f"fields.classes defines {', '.join(unused)} but no selector uses "
            f"{'it' if len(unused) == 1 else 'them'}, so those values are neither encrypted nor "
            "masked; add a selector ({class: NAME, keys: [...]}) or remove the class"
        )
    deterministic = sorted(
        name for name in used if (cls := fields.classes.get(name)) is not None and cls.deterministic
    )
    open_routes = [r for r in settings.write_routes.root if r.require_grant == "never"]
    if deterministic and open_routes:
        names = ", ".join(f"{r.method} {r.path}" for r in open_routes)
        warnings.append(
            f"write route(s) {names} have require_grant: never, so anyone who can reach them "
            f"can have {', '.join(deterministic)} values encrypted deterministically: the "
            "token of a guessed value then matches a real patient's, and any page or search "
            "that shows tokens confirms the guess; remove `require_grant: never` (the default, "
            "deterministic, asks for a grant for those classes only)"
        )
    scim = settings.scim
    if scim.enabled and scim.tls is None and not _is_loopback(scim.host):
        warnings.append(
            f"scim.host is {scim.host} without scim.tls: the SCIM bearer secret, which can grant "
            "access through every mapped group, crosses the network in clear text; set "
            "scim.tls, or listen on 127.0.0.1 behind a TLS-terminating proxy"
        )
    api = settings.admin_api
    if api.enabled and api.tls is None and not _is_loopback(api.host):
        warnings.append(
            f"admin_api.host is {api.host} without admin_api.tls: administrators' bearer tokens, "
            "which can grant PHI access to anyone, cross the network in clear text; set "
            "admin_api.tls, or listen on 127.0.0.1 behind a TLS-terminating proxy"
        )
    if upstream_in_clear(settings):
        warnings.append(
            f"upstream.url is plain http to {settings.upstream.url.host}, not a loopback "
            "address: bearer tokens (unless upstream.forward_authorization is false), query "
            "strings and fields no selector covers cross the network unencrypted; use https:// "
            "with upstream.tls, or run the portal on the same host"
        )
    return warnings


def load_settings(path: Path) -> Settings:
    """Read and validate the whole config file, or raise ConfigError listing every problem."""
    data = read_config_mapping(path)
    try:
        return Settings.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        detail = describe_validation_error(exc)
        raise ConfigError(f"{path}: invalid configuration\n{detail}") from None

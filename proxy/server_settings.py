"""Settings of the proxy's own network edges: listener, admin, upstream, limits, headers.

The security sections (identity, grants, keys, fields, write routes) live beside the code they
configure; `proxy.settings` assembles the whole file.
"""

from __future__ import annotations

import ipaddress
import ssl
from typing import TYPE_CHECKING, Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from keys.config_file import ConfigPath
from keys.errors import PhiProxyError
from keys.file_modes import loose_mode_problem

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "AdminSettings",
    "HeaderSettings",
    "LimitsSettings",
    "ListenSettings",
    "ListenTls",
    "TlsFileError",
    "UpstreamSettings",
    "UpstreamTls",
    "check_upstream_tls_files",
    "listener_ssl_context",
    "upstream_ssl_context",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
Port = Annotated[int, Field(ge=0, le=65535)]


class ListenTls(BaseModel):
    """TLS on the client-facing listener (TLS 1.2 or newer)."""

    model_config = _FROZEN
    cert_file: ConfigPath = Field(description="PEM certificate chain presented to clients.")
    key_file: ConfigPath = Field(description="PEM private key of that certificate (mode 0600).")


def _explicit_host(value: str, setting: str) -> str:
    if not value.strip():
        raise ValueError(
            f"{setting} is empty, which would listen on every network interface; write "
            "0.0.0.0 (or ::) explicitly if that is what you mean, or 127.0.0.1 for this host only"
        )
    return value


class ListenSettings(BaseModel):
    """Where clients reach the proxy."""

    model_config = _FROZEN
    host: str = Field("127.0.0.1", description="Address to listen on; 0.0.0.0 in a container.")
    port: Port = Field(8080, description="Port for client traffic.")
    tls: ListenTls | None = Field(None, description="Serve HTTPS; omit for plain HTTP.")

    @field_validator("host")
    @classmethod
    def _host_given(cls, value: str) -> str:
        return _explicit_host(value, "listen.host")


class AdminSettings(BaseModel):
    """The separate admin listener for /healthz and /readyz (never exposed to clients)."""

    model_config = _FROZEN
    host: str = Field("127.0.0.1", description="Admin address; keep it off the client network.")
    port: Port = Field(9090, description="Admin port; 0 disables the admin listener.")

    @field_validator("host")
    @classmethod
    def _host_given(cls, value: str) -> str:
        return _explicit_host(value, "admin.host")


class UpstreamTls(BaseModel):
    """TLS towards the portal, for deployments where the hop is not loopback."""

    model_config = _FROZEN
    ca_file: ConfigPath | None = Field(None, description="CA bundle that signs the portal's cert.")
    client_cert_file: ConfigPath | None = Field(None, description="Client certificate (mTLS).")
    client_key_file: ConfigPath | None = Field(None, description="Key of the client certificate.")

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> UpstreamTls:
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("client_cert_file and client_key_file must be given together")
        return self


class UpstreamSettings(BaseModel):
    """The portal behind the proxy."""

    model_config = _FROZEN
    url: AnyHttpUrl = Field(description="Base URL of the portal, e.g. http://127.0.0.1:8000.")
    connect_timeout: float = Field(5.0, gt=0, le=300, description="Seconds to connect.")
    timeout: float = Field(30.0, gt=0, le=3600, description="Seconds for the whole exchange.")
    max_connections: int = Field(100, ge=1, le=10000, description="Pooled connections.")
    preserve_host: bool = Field(
        default=False, description="Send the client's Host header instead of the portal's."
    )
    forward_authorization: bool = Field(
        default=True,
        description="Pass the client's Authorization header on to the portal "
        "(turn off if the portal must never see the bearer token).",
    )
    tls: UpstreamTls | None = Field(None, description="TLS settings for an https:// upstream.")

    @field_validator("url")
    @classmethod
    def _no_query(cls, value: AnyHttpUrl) -> AnyHttpUrl:
        if value.query or value.fragment:
            raise ValueError("the upstream URL must not carry a query or fragment")
        if value.username or value.password:
            raise ValueError(
                "the upstream URL must not carry a user name or password (it would be printed "
                "by check-config and logged at start); the proxy forwards each client's own "
                "credentials, or use upstream.tls for a client certificate"
            )
        return value

    @model_validator(mode="after")
    def _tls_needs_https(self) -> UpstreamSettings:
        if self.tls is not None and self.url.scheme != "https":
            raise ValueError(
                f"upstream.tls is set but upstream.url is {self.url.scheme}://, so the TLS "
                "settings would be ignored and the hop to the portal would be plain text; "
                "use https:// in upstream.url, or remove upstream.tls"
            )
        return self


class LimitsSettings(BaseModel):
    """Hard caps that keep a hostile or broken peer from exhausting the proxy."""

    model_config = _FROZEN
    max_request_body: int = Field(
        1 << 20, ge=1024, description="Bytes; larger request bodies get 413."
    )
    max_response_body: int = Field(
        32 << 20,
        ge=1024,
        description="Bytes (after decompression) of a response that must be transformed; "
        "larger ones get 502, never streamed through untransformed.",
    )


def _parse_network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_interface(value)
        except ValueError:
            raise ValueError(f"not an IP address or CIDR network: {value!r}") from None
        prefix = loose.network.prefixlen
        meant = f"write {ipaddress.ip_network(loose.ip)} for this one address"
        meant += (
            " (a /0 prefix would trust every address)"
            if prefix == 0
            else f", or {loose.network} for the whole subnet"
        )
        raise ValueError(
            f"{value!r} has host bits set after the /{prefix} prefix, so it is not a network "
            f"address; {meant}"
        ) from None
    if network.prefixlen == 0:
        raise ValueError(
            f"{value!r} trusts every address: any client could set X-Forwarded-For/-Host/-Proto "
            "and the portal would believe it; list the addresses or subnets of your load "
            "balancers instead"
        )
    return network


class HeaderSettings(BaseModel):
    """Which client headers are trusted or removed."""

    model_config = _FROZEN
    trusted_proxies: tuple[str, ...] = Field(
        (),
        description="CIDRs of load balancers whose X-Forwarded-* headers are kept and extended. "
        "Empty (default): the proxy's peer is the client.",
    )
    strip_request_headers: tuple[str, ...] = Field(
        (),
        description="More client header names to remove (added to the built-in list of identity "
        "headers); matched case-insensitively with '_' and '-' treated alike.",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _valid_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            _parse_network(item)
        return value

    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The trusted proxy networks, parsed."""
        return tuple(_parse_network(item) for item in self.trusted_proxies)


class TlsFileError(PhiProxyError):
    """A configured TLS certificate, private key or CA file cannot be used."""


def _check_readable(setting: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except FileNotFoundError:
        raise TlsFileError(
            f"{setting}: {path}: file not found; put the PEM file there (mounted secrets: check "
            "the volume), or correct the path"
        ) from None
    except OSError as exc:
        raise TlsFileError(
            f"{setting}: {path}: cannot be read ({exc.strerror}); make it readable by the user "
            "phi-proxy runs as"
        ) from None


def listener_ssl_context(tls: ListenTls) -> ssl.SSLContext:
    """The client listener's TLS context (TLS 1.2+), or TlsFileError naming the bad file.

    The private key must not be readable by group or others: whoever reads it can impersonate
    the proxy to every client.
    """
    _check_readable("listen.tls.cert_file", tls.cert_file)
    _check_readable("listen.tls.key_file", tls.key_file)
    problem = loose_mode_problem(tls.key_file, "listener TLS private key")
    if problem is not None:
        raise TlsFileError(f"listen.tls.key_file: {problem}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except ssl.SSLError as exc:
        raise TlsFileError(
            f"listen.tls: {tls.cert_file} and {tls.key_file} cannot be loaded as a PEM "
            f"certificate chain and its private key ({exc.reason or exc.__class__.__name__}); "
            "check that both are PEM and that the key belongs to the certificate"
        ) from None
    return context


def check_upstream_tls_files(settings: UpstreamSettings) -> None:
    """Raise TlsFileError naming the first configured upstream TLS file that cannot be read."""
    tls = settings.tls
    if tls is None:
        return
    for setting, path in (
        ("upstream.tls.ca_file", tls.ca_file),
        ("upstream.tls.client_cert_file", tls.client_cert_file),
        ("upstream.tls.client_key_file", tls.client_key_file),
    ):
        if path is not None:
            _check_readable(setting, path)


def upstream_ssl_context(settings: UpstreamSettings) -> ssl.SSLContext | None:
    """A verifying TLS context for an https portal (None for plain http).

    A client key readable by group or others is refused (TlsFileError at startup): whoever
    reads it can act as the proxy towards the portal.
    """
    if settings.url.scheme != "https":
        return None
    tls = settings.tls
    context = ssl.create_default_context(cafile=str(tls.ca_file) if tls and tls.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls and tls.client_cert_file and tls.client_key_file:
        problem = loose_mode_problem(tls.client_key_file, "upstream TLS client key")
        if problem is not None:
            raise TlsFileError(f"upstream.tls.client_key_file: {problem}")
        context.load_cert_chain(str(tls.client_cert_file), str(tls.client_key_file))
    return context

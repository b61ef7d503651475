"""`phi-proxy check-config`: what the proxy would run with, and what would stop or blind it.

Prints the summary and security posture, then fails (exit 1) on what would stop `serve` or
leave it refusing every token — a missing JWKS file, TLS file, audit key — or an unreadable
grant store. Kept apart from proxy.cli so that `phi-proxy --help` imports none of this.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import asyncio
import ssl
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keys.canary_register import canaries_path
from keys.config_file import resolve_config_path
from keys.errors import ConfigError
from keys.native import core_description
from keys.settings import describe_kek, keystore_file
from keys.usage import usage_counter, usage_path
from proxy.audit.secrets import key_file_problem
from proxy.canaries import load_canaries
from proxy.grants import format_duration, open_grant_store
from proxy.grants.presence import grant_store_exists
from proxy.identity.key_health import jwks_file_problems
from proxy.scim.check import check_scim
from proxy.server_settings import (
    TlsFileError,
    check_upstream_tls_files,
    listener_ssl_context,
    upstream_ssl_context,
)
from proxy.settings import Settings, config_warnings, load_settings, upstream_in_clear
from proxy.transform import FieldPolicy, RouteTable
from proxy.transform.settings import KeepLastMask, TextMask

if TYPE_CHECKING:
    from keys.keyring import Keyring

__all__ = ["check_config"]

EXIT_FAILURE = 1


def _summary(settings: Settings) -> list[str]:
    FieldPolicy.compile(settings.fields)
    RouteTable.compile(settings.write_routes)
    RouteTable.compile(settings.read_routes)
    store = keystore_file(settings.keys)
    keyring = store.load()
    lines = [
        f"upstream:      {settings.upstream.url}",
        f"listen:        {settings.listen.host}:{settings.listen.port}"
        + (" (TLS)" if settings.listen.tls else ""),
        f"admin:         {settings.admin.host}:{settings.admin.port}",
        (
            f"keystore:      {settings.keys.keystore} "
            f"({len(keyring.practices())} practices, {len(keyring.infos())} key versions)"
        ),
        f"kek:           {describe_kek(settings.keys.kek)} (kek id {store.kek_id})",
        f"usage counts:  {usage_path(settings.keys)}",
        f"canaries:      {_describe_canaries(settings, keyring)}",
        f"grant store:   {settings.grants.store}",
        f"scim:          {_describe_scim(settings)}",
        f"admin api:     {settings.admin_api.describe(settings.identity.audience)}",
        f"transform:     {core_description()}",
    ]
    lines.append("field classes:")
    for name, spec in sorted(settings.fields.classes.items()):
        mode = "deterministic (AES-SIV)" if spec.deterministic else "randomized (AES-GCM)"
        lines.append(f"  {name:<16} {mode}, mask: {_describe_mask(spec.mask)}")
    lines.append("selectors:")
    for selector in settings.fields.selectors:
        if selector.keys:
            target = f"keys {', '.join(selector.keys)}"
        else:
            target = f"xml {selector.xml}" if selector.xml is not None else f"path {selector.path}"
        lines.append(f"  {selector.field_class:<16} {target}")
    lines.append("write routes:" if settings.write_routes.root else "write routes:  (none)")
    lines.extend(
        f"  {route.method:<6} {route.path}  practice from {route.practice_from}, "
        f"require_grant: {route.require_grant}"
        for route in settings.write_routes.root
    )
    if settings.read_routes.root:
        lines.append("read routes (practice of records that name none):")
        lines.extend(
            f"  {route.method:<6} {route.path}  practice from {route.practice_from}"
            for route in settings.read_routes.root
        )
    lines.extend(_posture(settings))
    return lines


def _describe_canaries(settings: Settings, keyring: Keyring) -> str:
    """The register and how many canary tokens it arms (opened as `serve` opens it)."""
    path = canaries_path(settings.keys)
    count = len(load_canaries(settings.keys, keyring))
    return f"{path} ({count} token(s) watched)" if count else f"{path} (none)"


def _describe_scim(settings: Settings) -> str:
    scim = settings.scim
    if not scim.enabled:
        return "off"
    groups = ", ".join(f"{name!r} -> {g.practice}" for name, g in scim.groups.items()) or "none"
    return (
        f"{scim.host}:{scim.port}/scim/v2{' (TLS)' if scim.tls else ''}, users are "
        f"{scim.issuer}|<{scim.subject_from}>, groups: {groups}"
    )


def _posture(settings: Settings) -> list[str]:
    """The settings that decide who is trusted and what evidence is kept, in one block."""
    proxies = ", ".join(settings.headers.trusted_proxies)
    audit = settings.audit
    if not audit.enabled:
        trail = "OFF (disclosures leave no evidence)"
    else:
        where = {"file": str(audit.path), "stdout": "standard output"}.get(audit.sink, "")
        trail = f"on, sink {audit.sink}" + (f" ({where})" if where else "")
        trail += f", on_failure {audit.on_failure}"
        if audit.on_failure == "allow":
            trail += " (PHI is still decrypted while the trail cannot be written)"
    url = settings.upstream.url
    if url.scheme == "https":
        hop = "https (TLS verified" + (", client certificate)" if _mtls(settings) else ")")
    elif upstream_in_clear(settings):
        hop = f"PLAIN HTTP to {url.host}, not loopback (see the warning below)"
    else:
        hop = "plain http on loopback"
    forward = settings.upstream.forward_authorization
    return [
        "security posture:",
        "  trusted_proxies:       "
        + (
            f"{proxies} (X-Forwarded-* from these peers are kept and extended)"
            if proxies
            else "none (the peer is the client; clients' X-Forwarded-* are dropped)"
        ),
        "  identity.require:      "
        + (
            "true (requests without a token get 401)"
            if settings.identity.require
            else "false (requests without a token are served as anonymous, PHI masked)"
        ),
        f"  audit:                 {trail}",
        "  forward_authorization: "
        + (
            "true (the portal sees callers' bearer tokens)"
            if forward
            else "false (the portal never sees bearer tokens)"
        ),
        f"  upstream hop:          {hop}",
        f"  break_glass:           {_describe_break_glass(settings)}",
    ]


def _describe_break_glass(settings: Settings) -> str:
    glass = settings.break_glass
    if not glass.enabled:
        return "off (X-PHI-Break-Glass is stripped and ignored)"
    return (
        f"on: tokens whose {glass.claim} carries {glass.value!r} may open "
        f"{', '.join(glass.classes)} of one practice for {format_duration(glass.max_ttl)}, "
        f"{glass.max_per_day} per person a day; sign off within "
        f"{format_duration(glass.signoff_within)} (phi-grants review)"
    )


def _mtls(settings: Settings) -> bool:
    tls = settings.upstream.tls
    return tls is not None and tls.client_cert_file is not None


def _describe_mask(mask: object) -> str:
    if mask is None:
        return "null"
    if mask == "remove":
        return "remove (the member is left out)"
    if isinstance(mask, TextMask):
        return repr(mask.text)
    if isinstance(mask, KeepLastMask):
        return f"last {mask.keep_last} in {mask.template!r}"
    return type(mask).__name__


async def _check_grant_store(settings: Settings) -> bool | None:
    """True: readable. False: cannot be read. None: not there yet (checked without creating)."""
    if not await grant_store_exists(settings.grants):
        return None
    store = open_grant_store(settings.grants)
    try:
        return await store.ping()
    finally:
        await store.close()


def _tls_problem(settings: Settings) -> str | None:
    """Build the listener and upstream TLS contexts as serve does; the first problem, if any."""
    try:
        if settings.listen.tls is not None:
            listener_ssl_context(settings.listen.tls)
        check_upstream_tls_files(settings.upstream)
        upstream_ssl_context(settings.upstream)
    except TlsFileError as exc:
        return str(exc)
    except ssl.SSLError as exc:
        return (
            "upstream.tls: the CA bundle or the client certificate and key cannot be loaded "
            f"({exc.reason or exc.__class__.__name__}); check that they are PEM and that the "
            "key belongs to the certificate"
        )
    return None


def _print_sample(settings: Settings, sample: str, route: str | None, content_type: str) -> None:
    from proxy.sample_check import describe_sample  # noqa: PLC0415 - only for --sample

    try:
        body = Path(sample).read_bytes()
    except OSError as exc:
        raise ConfigError(f"--sample {sample}: cannot read it ({exc.strerror})") from None
    keyring = keystore_file(settings.keys).load()
    lines, warnings = describe_sample(
        settings, keyring, body, content_type=content_type, route=route
    )
    print()
    for line in lines:
        print(line)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def _start_problem(settings: Settings) -> str | None:
    """What would stop `serve`, or leave it refusing every token; SCIM warnings are printed."""
    scim_warnings, problem = check_scim(settings.scim)
    for warning in scim_warnings:
        print(f"warning: scim: {warning}", file=sys.stderr)
    if problem is None:
        problem = next(iter(jwks_file_problems(settings.identity)), None)
    if problem is None:
        problem = _tls_problem(settings)
    if problem is None and settings.audit.enabled:
        problem = key_file_problem(settings.audit)
    return problem


def check_config(
    config: str | None,
    sample: str | None = None,
    route: str | None = None,
    content_type: str = "application/json",
) -> int:
    """Print the summary and warnings; 0 valid, 1 a problem `serve` would hit, 2 config."""
    path = resolve_config_path(config)
    settings = load_settings(path)
    for line in _summary(settings):
        print(line)
    for warning in config_warnings(settings):
        print(f"warning: {warning}", file=sys.stderr)
    if not settings.audit.enabled:
        print(
            "warning: audit.enabled is false: disclosures leave no audit evidence, so a breach "
            "investigation cannot say whose PHI anyone saw; remove `enabled: false` unless this "
            "is a throw-away test setup",
            file=sys.stderr,
        )
    problem = _start_problem(settings)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    problem = usage_counter(settings.keys).check()
    if problem is not None:  # a warning only: the proxy runs, counting in memory (keys.usage)
        print(
            f"warning: key usage counters cannot be saved ({problem}). The proxy will still "
            "encrypt, but keep its counts in memory only: `phi-keys list` and "
            "keys.auto_rotate_after will not see them, and they are lost when it stops. Set "
            "keys.usage_file to a file on a writable, persistent volume.",
            file=sys.stderr,
        )
    readable = asyncio.run(_check_grant_store(settings))
    if readable is None:
        print(
            f"warning: there is no grant store at {settings.grants.store} yet. The proxy will "
            "create an empty one when it starts, and every caller will see masks until grants "
            "are added (`phi-grants add`). If grants already exist, grants.store (or "
            "grants.pg_schema) points to the wrong place.",
            file=sys.stderr,
        )
    elif not readable:
        print(
            f"error: the grant store {settings.grants.store} cannot be read; "
            "check the path/permissions or the database",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    if sample is not None:
        _print_sample(settings, sample, route, content_type)
    print(f"ok: {path} is valid")
    return 0

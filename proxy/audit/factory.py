"""Opening the trail from settings: for the proxy (batched, async) and for one-shot CLIs.

`phi-grants` and `phi-keys` record every change they make with `record_change`, appending
synchronously to the same file, chain and lock as the proxy workers on this host (or, with
`sink: postgres`, to the fleet's one chain in the database).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keys.config_file import load_section
from proxy.audit.chain import Chain
from proxy.audit.errors import AuditError
from proxy.audit.events import ChangeEvent, iso_time
from proxy.audit.secrets import ChainKey, load_chain_key, load_signing_key
from proxy.audit.settings import AuditSettings
from proxy.audit.sink import AuditSink, FileSink, StdoutSink
from proxy.audit.trail import AuditTrail

if TYPE_CHECKING:
    from pathlib import Path

    from proxy.audit.postgres_sink import PostgresSink

__all__ = [
    "audit_key",
    "open_chain",
    "open_postgres_sink",
    "open_sink",
    "open_trail",
    "record_change",
]

_log = logging.getLogger("phi_proxy.audit")


def audit_key(settings: AuditSettings) -> ChainKey:
    """The chain's HMAC key; with `sink: postgres` it must already exist (AuditError if not).

    A fleet shares one chain, so every replica and auditor must hold the same key: a key made
    up by whichever replica starts first would leave the others writing events nobody can
    verify. The file sink keeps its rule: a key is created for a brand-new trail on this host.
    """
    if settings.sink == "postgres" and settings.key_env is None and not settings.key_file.exists():
        raise AuditError(
            f"{settings.key_file}: the audit key is missing. With audit.sink: postgres every "
            "replica and auditor must use the same key, so it is never created automatically: "
            "create it once (head -c 32 /dev/urandom | base64 > audit.key; chmod 600 audit.key), "
            "copy it to every replica, or set audit.key_env"
        )
    return load_chain_key(settings)


def open_chain(settings: AuditSettings) -> Chain:
    """The chain with its keys loaded (AuditError when a key is missing or unusable)."""
    return Chain(
        audit_key(settings),
        signer=load_signing_key(settings.signing_key_file),
        checkpoint_every=settings.checkpoint_every,
    )


def open_postgres_sink(settings: AuditSettings, *, create: bool = True) -> PostgresSink:
    """The fleet's chain in PostgreSQL (connects on first use; `create=False` for readers)."""
    if settings.dsn is None:  # pragma: no cover - AuditSettings requires dsn for postgres
        raise AuditError("audit.sink is postgres but audit.dsn is not set")
    try:
        from proxy.audit.postgres_sink import PostgresSink  # noqa: PLC0415 - optional dependency
    except ImportError:
        raise AuditError(
            "audit.sink is postgres but the PostgreSQL driver (asyncpg) is not installed; "
            "install phi-proxy with the postgres extra (pip install 'phi-proxy[postgres]')"
        ) from None
    return PostgresSink(
        settings.dsn, schema=settings.pg_schema, timeout=settings.pg_timeout_seconds, create=create
    )


def open_sink(settings: AuditSettings) -> AuditSink:
    """The configured sink."""
    if settings.sink == "stdout":
        return StdoutSink()
    if settings.sink == "postgres":
        return open_postgres_sink(settings)
    return FileSink(settings.path, fsync=settings.fsync)


class _DatabaseTrail(AuditTrail):
    """A trail whose sink holds a database connection: closing the trail closes it too."""

    def __init__(self, sink: PostgresSink, chain: Chain, **options: Any) -> None:  # noqa: ANN401
        super().__init__(sink, chain, **options)
        self._database = sink

    async def close(self) -> None:
        """Write what is queued (the trail's own close), then close the connection."""
        try:
            await super().close()
        finally:
            await asyncio.to_thread(self._database.close)


def open_trail(settings: AuditSettings) -> AuditTrail | None:
    """The proxy's batched trail, or None when auditing is disabled (logged loudly)."""
    if not settings.enabled:
        _log.warning("audit.enabled is false: disclosures leave no audit evidence")
        return None
    options: dict[str, Any] = {
        "flush_interval": settings.flush_interval / 1000,
        "checkpoint_seconds": settings.checkpoint_seconds,
        "deny_on_failure": settings.on_failure == "deny",
    }
    chain = open_chain(settings)
    if settings.sink == "postgres":
        return _DatabaseTrail(open_postgres_sink(settings), chain, **options)
    return AuditTrail(open_sink(settings), chain, **options)


def record_change(
    config_path: Path,
    kind: str,
    action: str,
    *,
    actor: str | None,
    details: dict[str, Any],
    now: datetime | None = None,
) -> None:
    """Append one grant/key change event now; AuditError if it cannot be written.

    The change has already happened when this runs (a grant id exists only after the insert),
    so the CLI reports a failure here as "done, but not audited" with a non-zero exit.
    """
    settings = load_section(config_path, "audit", AuditSettings)
    if not settings.enabled:
        return
    moment = now or datetime.now(UTC)
    event = ChangeEvent(kind, moment, action, actor, details)
    try:
        chain = open_chain(settings)
    except AuditError as exc:  # a missing or unreadable audit key
        raise AuditError(
            f"the change was made but could not be written to the audit trail: {exc}; record "
            "it by hand, then fix the audit key"
        ) from None
    sink = open_sink(settings)
    try:
        sink.append(chain, [event.to_json()], ts=iso_time(moment), force_checkpoint=False)
    except OSError as exc:
        if settings.sink == "postgres":  # the sink's message names no credential
            why, what = str(exc), "the audit database (is it reachable, may this role INSERT?)"
        else:
            why = f"{exc.__class__.__name__}: {exc.strerror or 'error'}"
            what = "the audit file's folder or permissions"
        raise AuditError(
            f"the change was made but could not be written to the audit trail "
            f"{sink.describe()} ({why}); record it by hand and check {what}"
        ) from None
    finally:
        close = getattr(sink, "close", None)
        if close is not None:
            close()

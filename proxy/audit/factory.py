"""Opening the trail from settings: for the proxy (batched, async) and for one-shot CLIs.

`phi-grants` and `phi-keys` record every change they make with `record_change`, appending
synchronously to the same file, chain and lock as the proxy workers on this host.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keys.config_file import load_section
from proxy.audit.chain import Chain
from proxy.audit.errors import AuditError
from proxy.audit.events import ChangeEvent, iso_time
from proxy.audit.secrets import load_chain_key, load_signing_key
from proxy.audit.settings import AuditSettings
from proxy.audit.sink import AuditSink, FileSink, StdoutSink
from proxy.audit.trail import AuditTrail

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["open_chain", "open_sink", "open_trail", "record_change"]

_log = logging.getLogger("phi_proxy.audit")


def open_chain(settings: AuditSettings) -> Chain:
    """The chain with its keys loaded (AuditError when a key is missing or unusable)."""
    return Chain(
        load_chain_key(settings),
        signer=load_signing_key(settings.signing_key_file),
        checkpoint_every=settings.checkpoint_every,
    )


def open_sink(settings: AuditSettings) -> AuditSink:
    """The configured sink."""
    if settings.sink == "stdout":
        return StdoutSink()
    return FileSink(settings.path, fsync=settings.fsync)


def open_trail(settings: AuditSettings) -> AuditTrail | None:
    """The proxy's batched trail, or None when auditing is disabled (logged loudly)."""
    if not settings.enabled:
        _log.warning("audit.enabled is false: disclosures leave no audit evidence")
        return None
    return AuditTrail(
        open_sink(settings),
        open_chain(settings),
        flush_interval=settings.flush_interval / 1000,
        checkpoint_seconds=settings.checkpoint_seconds,
        deny_on_failure=settings.on_failure == "deny",
    )


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
        open_sink(settings).append(
            open_chain(settings), [event.to_json()], ts=iso_time(moment), force_checkpoint=False
        )
    except OSError as exc:
        raise AuditError(
            f"the change was made but could not be written to the audit trail {settings.path} "
            f"({exc.__class__.__name__}: {exc.strerror or 'error'}); record it by hand and fix "
            "the audit file's folder or permissions"
        ) from None

"""The proxy's audit writer: events queue in memory, one task writes them every flush interval.

Requests never wait for the disk: `emit` appends to a list. A writer task seals and appends the
batch every `flush_interval` ms on a worker thread (the file lock may be held by another process)
and, while idle, probes that the sink can still be written.

Failure policy `deny` (the default): the moment a write or a probe fails, `may_disclose()`
turns False, and every request that asks from then on gets NO_ACCESS — everything masked —
until a write succeeds again. Events that could not be written stay queued (bounded) and are
written first on recovery, so a sink outage loses no evidence unless the process dies during
it. The window in which a disclosure can happen without its evidence reaching the disk is one
flush interval (plus the time to notice a failure, at most one interval while idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from proxy import metrics
from proxy.audit.errors import AuditError
from proxy.audit.events import iso_time

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.audit.chain import Chain
    from proxy.audit.sink import AuditSink

__all__ = ["MAX_PENDING", "SHUTDOWN_ATTEMPTS", "AuditTrail"]

_log = logging.getLogger("phi_proxy.audit")

#: Events kept in memory while the sink is down; older ones are dropped and counted.
MAX_PENDING: Final = 100_000
_ERROR_LOG_INTERVAL: Final = 30.0
#: Tries of the last write at shutdown (each bounded by the sink's own timeout), and the pause
#: between them; with the PostgreSQL sink's default 5 s timeout this stays well inside a
#: 30 s termination grace period.
SHUTDOWN_ATTEMPTS: Final = 3
SHUTDOWN_RETRY_SECONDS: Final = 0.5


class AuditTrail:
    """Batches events to a sink; tells the pipeline whether it may decrypt right now."""

    def __init__(
        self,
        sink: AuditSink,
        chain: Chain,
        *,
        flush_interval: float,
        checkpoint_seconds: float,
        deny_on_failure: bool,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Write to `sink` every `flush_interval` seconds once `start` has run."""
        self.sink = sink
        self._chain = chain
        self._interval = flush_interval
        self._checkpoint_seconds = checkpoint_seconds
        self._deny = deny_on_failure
        self._clock = clock
        self._pending: list[dict[str, Any]] = []
        self._dropped = 0
        self._healthy = True
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._last_checkpoint = time.monotonic()
        self._last_error_log: float | None = None

    def __repr__(self) -> str:
        return f"AuditTrail({self.sink.describe()}, healthy={self._healthy})"

    @property
    def healthy(self) -> bool:
        """True when the last write or probe succeeded."""
        return self._healthy

    @property
    def queued(self) -> int:
        """Events waiting in memory to be written (for metrics)."""
        return len(self._pending)

    def may_disclose(self) -> bool:
        """False while the sink is failing under `on_failure: deny`: mask everything then."""
        return self._healthy or not self._deny

    def emit(self, payload: dict[str, Any]) -> None:
        """Queue one event payload (never blocks, never raises)."""
        if len(self._pending) >= MAX_PENDING:
            del self._pending[0]
            self._dropped += 1
            metrics.current().audit_dropped(1)
        self._pending.append(payload)

    async def start(self) -> None:
        """Write the start event now (raising if the sink is unusable), then run the writer."""
        self.emit(self._lifecycle("start"))
        await self.flush()
        if not self._healthy:
            raise AuditError(
                f"cannot write the audit trail {self.sink.describe()}; the proxy will not start "
                f"without it: {self.sink.advice()}"
            )
        self._task = asyncio.create_task(self._run(), name="phi-audit-writer")

    async def close(self) -> None:
        """Stop the writer and write what is queued, closing with a checkpoint.

        A flush already in progress is allowed to finish first (cancelling it would abandon its
        batch on the worker thread: lost if that write then failed). The final write is tried
        `SHUTDOWN_ATTEMPTS` times, so one slow answer from the sink at shutdown loses nothing.
        """
        if self._task is not None:
            async with self._lock:  # the writer is now asleep or waiting for the lock
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.emit(self._lifecycle("stop"))
        for attempt in range(SHUTDOWN_ATTEMPTS):
            if attempt:
                await asyncio.sleep(SHUTDOWN_RETRY_SECONDS)
            await self.flush(force_checkpoint=True)
            if not self._pending:
                break
        if self._pending:
            _log.error(
                "audit trail %s could not be written at shutdown; %d event(s) lost",
                self.sink.describe(),
                len(self._pending),
            )

    def _lifecycle(self, action: str) -> dict[str, Any]:
        import os  # noqa: PLC0415 - only for the pid of the lifecycle events

        return {
            "type": "proxy",
            "ts": iso_time(self._clock()),
            "action": action,
            "actor": None,
            "details": {"pid": os.getpid()},
        }

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            due = time.monotonic() - self._last_checkpoint >= self._checkpoint_seconds
            await self.flush(force_checkpoint=due)

    async def flush(self, *, force_checkpoint: bool = False) -> None:
        """Write everything queued (or probe the sink when nothing is); update health."""
        async with self._lock:
            batch = self._pending
            self._pending = []
            if self._dropped:
                batch.insert(0, self._gap_event())
            try:
                if batch:
                    checkpointed = await asyncio.to_thread(
                        self.sink.append,
                        self._chain,
                        batch,
                        ts=iso_time(self._clock()),
                        force_checkpoint=force_checkpoint,
                    )
                    if checkpointed:
                        self._last_checkpoint = time.monotonic()
                else:
                    await asyncio.to_thread(self.sink.probe)
            except Exception as exc:  # noqa: BLE001 - any failure: keep the events, deny, retry
                # Not only OSError: a corrupt head (a seq beyond 64 bits) or a database row that
                # is gone raise other errors, and a writer that died on them would leave the
                # proxy decrypting with no evidence written.
                if self._dropped:
                    batch.pop(0)
                # In order, within the bound (the newest kept, as `emit` does). What does not fit
                # is counted, never silently lost: the next write opens with `events_dropped`.
                kept = batch + self._pending
                overflow = max(0, len(kept) - MAX_PENDING)
                self._dropped += overflow
                metrics.current().audit_dropped(overflow)
                self._pending = kept[-MAX_PENDING:]
                self._failed(exc)
                return
            self._dropped = 0
            if not self._healthy:
                _log.warning("audit trail %s is writable again", self.sink.describe())
            self._healthy = True

    def _gap_event(self) -> dict[str, Any]:
        return {
            "type": "proxy",
            "ts": iso_time(self._clock()),
            "action": "events_dropped",
            "actor": None,
            "details": {"count": self._dropped},
        }

    def _failed(self, exc: Exception) -> None:
        was_healthy, self._healthy = self._healthy, False
        now = time.monotonic()
        if (
            was_healthy
            or self._last_error_log is None
            or (now - self._last_error_log >= _ERROR_LOG_INTERVAL)
        ):
            self._last_error_log = now
            policy = (
                "masking every PHI field until it recovers"
                if self._deny
                else "still decrypting (audit.on_failure: allow)"
            )
            _log.error(
                "audit trail %s cannot be written (%s: %s); %s; %d event(s) queued",
                self.sink.describe(),
                exc.__class__.__name__,
                (exc.strerror if isinstance(exc, OSError) else None) or "error",
                policy,
                len(self._pending),
            )

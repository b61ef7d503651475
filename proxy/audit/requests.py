"""From one finished request to its audit event and alert lines.

The pipeline fills an `AuditState` as it goes (the request- and response-transform counters and
the caller's `Access`), asks `gate()` for the access to use — NO_ACCESS while the trail cannot be
written under `on_failure: deny` — and calls `finish()` once with the final status, also when
the request failed with an error. A request that touched no PHI leaves no audit event. The
alert lines it raises (one per alert at most, rate-limited per subject) are built in alerts.py.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from proxy import metrics
from proxy.audit.alerts import RequestAlerts
from proxy.audit.break_glass_events import break_glass_fields
from proxy.audit.events import (
    CanaryTouch,
    RecordAccess,
    RequestEvent,
    canary_json,
    iso_time,
    path_template,
)
from proxy.audit.records import group_records
from proxy.errors import ProxyError
from proxy.grants import NO_ACCESS
from proxy.identity.errors import AuthenticationError
from proxy.transform.errors import RequestRejected, UnsafeBody

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.accesslog import AccessRecord
    from proxy.audit.settings import AlertSettings
    from proxy.audit.trail import AuditTrail
    from proxy.break_glass_gate import BreakGlassAsk
    from proxy.grants import Access
    from proxy.transform import TransformStats

__all__ = ["AUDIT_STATE_KEY", "AuditState", "RequestAuditor", "status_of"]


@dataclass(slots=True)
class AuditState:
    """What one request touched, filled in by the pipeline."""

    request_stats: TransformStats | None = None
    response_stats: TransformStats | None = None
    access: Access | None = None
    denied: bool = False
    write_route: str | None = None
    #: Canary tokens the request carried or read (`proxy.canaries.canary_touched` adds them).
    canary: list[CanaryTouch] = field(default_factory=list)
    #: The request's X-PHI-Break-Glass header and what became of it (None: not sent).
    break_glass: BreakGlassAsk | None = None


AUDIT_STATE_KEY = web.RequestKey("phi_proxy_audit_state", AuditState)


def status_of(exc: BaseException) -> tuple[int, str]:
    """The status and outcome code the app middleware answers `exc` with."""
    result: tuple[int, str]
    if isinstance(exc, AuthenticationError):
        result = 401, f"unauthenticated:{exc.reason}"
    elif isinstance(exc, ProxyError):
        result = exc.status, exc.code
    elif isinstance(exc, RequestRejected):
        result = exc.status, "request_rejected"
    elif isinstance(exc, UnsafeBody):
        result = 502, f"unsafe_body:{exc.reason}"
    elif isinstance(exc, web.HTTPException):
        result = exc.status, "refused"
    else:
        result = 500, "internal_error"
    return result


def this_replica() -> str:
    """`host:pid` of this process: unique across a fleet at any one time."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RequestAuditor:
    """Turns finished requests into audit events and alerts; gates access on trail health."""

    def __init__(
        self,
        trail: AuditTrail | None,
        alerts: AlertSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
        replica: str | None = None,
    ) -> None:
        """Write events to `trail` (None: alerts only, no trail), naming `replica` (host:pid)."""
        self.trail = trail
        self.replica = replica if replica is not None else this_replica()
        self.alerts = RequestAlerts(
            repeat_interval=alerts.repeat_interval_seconds,
            burst_threshold=alerts.masked_burst_threshold,
            burst_window=alerts.masked_burst_window_seconds,
        )
        self._clock = clock
        self._monotonic = monotonic

    def __repr__(self) -> str:
        return f"RequestAuditor({self.trail!r})"

    def gate(self, access: Access, state: AuditState) -> Access:
        """The access to use for this response: NO_ACCESS while disclosures cannot be audited."""
        state.access = access
        if self.trail is not None and not self.trail.may_disclose():
            state.denied = True
            metrics.current().audit_denied()
            return NO_ACCESS
        return access

    def finish(self, record: AccessRecord, state: AuditState, status: int, outcome: str) -> None:
        """Alert on what needs a human, and queue the audit event if PHI was touched."""
        out, into, access = state.response_stats, state.request_stats, state.access
        now = self._monotonic()
        if state.canary:
            self.alerts.canary(record, state.canary, now)
        if out is not None:
            self.alerts.integrity(record, out, now)
            # While the trail is down everyone is masked: that is no caller's lapse or burst.
            if access is not None and not state.denied:
                self.alerts.lapsed(record, out, access, now)
            if out.masked and not state.denied:
                self.alerts.masked(record, now)
        emergency = break_glass_fields(state)
        if emergency is not None:
            self.alerts.break_glass(record, emergency, now)
        touched = (out is not None and out.touched) or (into is not None and into.touched)
        refused_phi = status >= 400 and (  # noqa: PLR2004 - any refusal
            state.write_route is not None or outcome == "request_rejected"
        )
        if self.trail is None or not (
            touched or refused_phi or state.denied or state.canary or emergency
        ):
            return
        self.trail.emit(self._payload(record, state, status, outcome))

    def _payload(
        self, record: AccessRecord, state: AuditState, status: int, outcome: str
    ) -> dict[str, Any]:
        """The event's payload, built straight from the stats; seals to `_event().to_json()`.

        The hot path. At 100 records the dataclass route cost ~150 µs per request in object
        churn; this groups the records (line format 2, `group_records`) in one pass over the
        transform's `disclosures`, and hands them over as canonical JSON bytes (`orjson.Fragment`,
        keys sorted exactly as `canonical` sorts them), so the chain writes the same line. Why
        bytes: the chain serializes a payload twice (MAC, then line), and the event waits in
        memory for up to one flush interval, where live containers make every garbage
        collection walk them; the Fragment is serialized once and is not a container (measured
        at 100 records: +1 µs to build, -1.3 µs to seal; at 1,000: +4 µs, -9 µs).
        tests/audit/test_audit_payload.py proves the sealed lines identical.
        """
        out, into, access = state.response_stats, state.request_stats, state.access
        practices: set[str] = set()
        lapsed: set[str] = set()
        grant_ids: set[str] = set()
        records: list[dict[str, Any]] | orjson.Fragment = []
        if out is not None:
            if out.disclosures:
                records = orjson.Fragment(
                    orjson.dumps(group_records(out.disclosures), option=orjson.OPT_SORT_KEYS)
                )
            practices = out.practices | out.withheld
            if access is not None:
                for practice in out.practices:
                    grant_ids.update(access.grant_ids_for(practice))
                lapsed = {p for p in out.withheld if access.lapsed_grant_ids_for(p)}
        payload: dict[str, Any] = {
            "type": "request",
            "ts": iso_time(self._clock()),
            "request_id": record.request_id,
            "subject": record.subject,
            "client": record.peer,
            "method": record.method,
            "path": path_template(record.path, state.write_route),
            "status": status,
            "outcome": outcome,
            "decrypted": dict(out.decrypted) if out is not None else {},
            "masked": dict(out.masked) if out is not None else {},
            "plaintext_kept": dict(out.plaintext_kept) if out is not None else {},
            "encrypted": dict(into.encrypted) if into is not None else {},
            "practices": sorted(practices),
            "grant_ids": sorted(grant_ids),
            "records": records,
            "integrity_failures": out.integrity_failures if out is not None else 0,
            "lapsed_practices": sorted(lapsed),
            "audit_denied": state.denied,
            "replica": self.replica,
        }
        if state.canary:
            payload["canary"] = canary_json(state.canary)
        if (emergency := break_glass_fields(state)) is not None:
            payload["break_glass"] = emergency
        return payload

    def _event(
        self, record: AccessRecord, state: AuditState, status: int, outcome: str
    ) -> RequestEvent:
        """The event as a frozen value (reference form of `_payload`; tests compare the two)."""
        out, into, access = state.response_stats, state.request_stats, state.access
        disclosed: dict[tuple[str, str], set[str]] = {}
        practices: set[str] = set()
        lapsed: set[str] = set()
        grant_ids: set[str] = set()
        if out is not None:
            for practice, record_id, field_class in out.record_classes:
                disclosed.setdefault((practice, record_id), set()).add(field_class)
            practices = out.practices | out.withheld
            if access is not None:
                for practice in out.practices:
                    grant_ids.update(access.grant_ids_for(practice))
                lapsed = {p for p in out.withheld if access.lapsed_grant_ids_for(p)}
        records = tuple(
            RecordAccess(practice, record_id, tuple(sorted(classes)))
            for (practice, record_id), classes in sorted(disclosed.items())
        )
        return RequestEvent(
            ts=self._clock(),
            request_id=record.request_id,
            subject=record.subject,
            client=record.peer,
            method=record.method,
            path=path_template(record.path, state.write_route),
            status=status,
            outcome=outcome,
            decrypted=dict(out.decrypted) if out is not None else {},
            masked=dict(out.masked) if out is not None else {},
            plaintext_kept=dict(out.plaintext_kept) if out is not None else {},
            encrypted=dict(into.encrypted) if into is not None else {},
            practices=tuple(sorted(practices)),
            grant_ids=tuple(sorted(grant_ids)),
            records=records,
            integrity_failures=out.integrity_failures if out is not None else 0,
            lapsed_practices=tuple(sorted(lapsed)),
            audit_denied=state.denied,
            replica=self.replica,
            canary=tuple(state.canary),
            break_glass=break_glass_fields(state),
        )

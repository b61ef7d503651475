"""Grant use, read from the audit trail: when each grant last disclosed PHI, and lapsed attempts.

A grant is *used* when an audited request disclosed PHI through it: its id is in the event's
`grant_ids`. The trail the config's `audit:` section names (the file and its rotated siblings,
or the fleet's PostgreSQL trail) is read and verified with the code `phi-audit` uses. When no
trail can be read, last use is "unknown" — never guessed — and the reason is kept, because the
access review is then incomplete and must say so.

Read-only: reading the trail never creates an audit key or a database schema.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from keys.config_file import load_section
from proxy.audit.errors import AuditError
from proxy.audit.events import parse_time
from proxy.audit.factory import audit_key, open_postgres_sink
from proxy.audit.settings import AuditSettings
from proxy.audit.verify import iter_events, trail_files, verify_database_export, verify_files
from proxy.grants.model import LAPSED_LOOKBACK

if TYPE_CHECKING:
    from datetime import datetime

    from proxy.audit.secrets import ChainKey
    from proxy.audit.verify import VerifyResult

__all__ = ["LapsedUse", "Usage", "UsageStatus", "read_usage"]

UsageStatus = Literal["verified", "unverified", "unknown", "not_checked"]


@dataclass(frozen=True, slots=True)
class LapsedUse:
    """Requests in which PHI was withheld from a subject whose grant at a practice had ended."""

    subject: str
    practice: str
    requests: int
    first: datetime
    last: datetime


@dataclass(frozen=True, slots=True)
class Usage:
    """What the audit trail says about grant use; `status` says how far to trust it.

    verified: read and verified. unverified: read, but the chain did not verify (or the key
    was missing), so entries may be missing or altered. unknown: no trail could be read.
    not_checked: the operator asked to skip it (--skip-usage).
    """

    status: UsageStatus
    source: str | None = None
    reason: str | None = None
    since: datetime | None = None  # the first event read: nothing older is known
    last_use: dict[str, datetime] = field(default_factory=dict)
    lapsed: tuple[LapsedUse, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def readable(self) -> bool:
        """True when last-use data came from a trail (verified or not)."""
        return self.status in {"verified", "unverified"}

    @classmethod
    def unknown(cls, reason: str, source: str | None = None) -> Usage:
        """No readable trail: every last use is unknown."""
        return cls("unknown", source=source, reason=reason)


def _event_time(value: object) -> datetime | None:
    """An event's `ts`, or None when it has none that reads as a time (such events are skipped)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


@dataclass(slots=True)
class _Scan:
    """Accumulates last use per grant id and lapsed-grant attempts while reading events."""

    lapsed_since: datetime
    since: datetime | None = None
    last_use: dict[str, datetime] = field(default_factory=dict)
    lapsed: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def add(self, event: dict[str, Any]) -> None:
        ts = _event_time(event.get("ts"))
        if ts is None:
            return
        if self.since is None or ts < self.since:
            self.since = ts
        if event.get("type") != "request":
            return
        for grant_id in event.get("grant_ids") or ():
            if not isinstance(grant_id, str):
                continue
            previous = self.last_use.get(grant_id)
            if previous is None or ts > previous:
                self.last_use[grant_id] = ts
        subject = event.get("subject")
        if not isinstance(subject, str) or ts < self.lapsed_since:
            return
        for practice in event.get("lapsed_practices") or ():
            entry = self.lapsed.setdefault((subject, str(practice)), [0, ts, ts])
            entry[0] += 1
            entry[1], entry[2] = min(entry[1], ts), max(entry[2], ts)

    def lapsed_uses(self) -> tuple[LapsedUse, ...]:
        return tuple(
            LapsedUse(subject, practice, count, first, last)
            for (subject, practice), (count, first, last) in sorted(
                self.lapsed.items(), key=lambda item: (item[0][1], item[0][0])
            )
        )


def _chain_key(settings: AuditSettings) -> tuple[ChainKey | None, str | None]:
    """The audit key, or why there is none. Never creates a key (a review only reads)."""
    if settings.key_env is None and not settings.key_file.exists():
        return None, f"the audit key {settings.key_file} (audit.key_file) is missing"
    try:
        return audit_key(settings), None
    except AuditError as exc:
        return None, str(exc)


def _doubt(problem: str | None, key_problem: str | None) -> str | None:
    """Why last use read from this trail cannot be fully trusted (None: it can)."""
    if problem is not None:
        return f"the audit trail does not verify: {problem}"
    if key_problem is not None:
        return f"{key_problem}, so the trail's MACs could not be checked"
    return None


def _usage_from(
    files: list[Path], result: VerifyResult, *, source: str, doubt: str | None, now: datetime
) -> Usage:
    scan = _Scan(lapsed_since=now - LAPSED_LOOKBACK)
    try:
        for _, _, event in iter_events(files):
            scan.add(event)
    except OSError as exc:
        return Usage.unknown(f"cannot read the audit trail ({exc.__class__.__name__}: {exc})")
    if scan.since is None:
        return Usage.unknown("the audit trail holds no events yet", source)
    return Usage(
        "verified" if doubt is None else "unverified",
        source=source,
        reason=doubt,
        since=scan.since,
        last_use=scan.last_use,
        lapsed=scan.lapsed_uses(),
        notes=tuple(result.notes),
    )


def _read_files(settings: AuditSettings, now: datetime) -> Usage:
    files = trail_files(settings.path)
    if not files:
        return Usage.unknown(
            f"there is no audit trail at {settings.path} (audit.path); run the review on the "
            "host whose proxy writes it, or correct audit.path"
        )
    rotated = f" and {len(files) - 1} rotated file(s)" if len(files) > 1 else ""
    key, key_problem = _chain_key(settings)
    # The whole configured trail: one that no longer starts at seq 1 lost its oldest files.
    result = verify_files(
        files,
        key=key,
        head_of=settings.path,
        whole_trail=True,
        pruned_before=settings.pruned_before,  # retention the operator recorded in the config
    )
    problem = None if result.problem is None else str(result.problem)
    return _usage_from(
        files,
        result,
        source=f"{settings.path}{rotated}",
        doubt=_doubt(problem, key_problem),
        now=now,
    )


def _read_database(settings: AuditSettings, scratch: Path, now: datetime) -> Usage:
    """The fleet's trail, exported and verified by the code `phi-audit` uses."""
    try:
        sink = open_postgres_sink(settings, create=False)
    except AuditError as exc:
        return Usage.unknown(str(exc))
    from proxy.audit.postgres_sink import export_trail  # noqa: PLC0415 - optional dependency

    source = sink.describe()
    try:
        path, head = export_trail(sink, scratch)
    except OSError as exc:
        return Usage.unknown(f"cannot read the audit trail in {source} ({exc})", source)
    finally:
        sink.close()
    if head.seq == 0:
        return Usage.unknown("the audit trail holds no events yet", source)
    key, key_problem = _chain_key(settings)
    result = verify_database_export(path, head, key=key)
    problem = None if result.problem is None else result.problem.in_database(source)
    doubt = _doubt(problem, key_problem)
    return _usage_from([path], result, source=source, doubt=doubt, now=now)


def read_usage(config_path: Path, *, now: datetime) -> Usage:
    """Last use per grant from the trail the config's `audit:` section names (read-only).

    Raises ConfigError only for an invalid `audit:` section; every other obstacle becomes
    `Usage.unknown` with the reason, so the review still shows the grants.
    """
    settings = load_section(config_path, "audit", AuditSettings)
    if not settings.enabled:
        return Usage.unknown(
            "audit.enabled is false, so no audit trail records who used which grant"
        )
    if settings.sink == "stdout":
        return Usage.unknown(
            "audit.sink is stdout: the trail is in your log collector, which phi-grants cannot "
            "read; look up last use there"
        )
    if settings.sink == "postgres":
        with tempfile.TemporaryDirectory(prefix="phi-grants-review-") as scratch:
            return _read_database(settings, Path(scratch), now)
    return _read_files(settings, now)

"""The configured trail, verified, and the disclosure report read from it: one path for all.

`phi-audit verify|report` and the admin API's report both come through here, so a report over
HTTP is verified exactly as the command verifies it, and says so when the trail does not verify.
With `audit.sink: postgres` the fleet's chain is exported in one consistent snapshot to a scratch
JSON-lines file and checked by the very code that checks file trails.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keys.config_file import load_section
from keys.errors import ConfigError
from proxy.audit.factory import audit_key, open_postgres_sink
from proxy.audit.report import ReportFilter, ReportRow, build_report
from proxy.audit.settings import AuditSettings
from proxy.audit.verify import (
    Problem,
    VerifyResult,
    iter_events,
    trail_files,
    verify_database_export,
    verify_files,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxy.audit.secrets import ChainKey
    from proxy.audit.segments import EventSink

__all__ = [
    "CheckedTrail",
    "TrailReport",
    "configured_report",
    "readable_audit_settings",
    "verify_configured_trail",
]


@dataclass(frozen=True, slots=True)
class CheckedTrail:
    """A verified trail: the result, the files to report from, and how to name places in it."""

    result: VerifyResult
    files: list[Path]
    database: str | None = None  # the PostgreSQL trail's description, None for files

    def where(self, problem: Problem) -> str:
        """`file:line: …`, or the database and the row (in seq order) for a PostgreSQL trail."""
        return str(problem) if self.database is None else problem.in_database(self.database)

    def location(self) -> str:
        """What was verified, for the OK line."""
        return self.database or f"{self.result.files} file(s)"


def verify_configured_trail(
    settings: AuditSettings,
    scratch: Path,
    *,
    key: ChainKey | None,
    public_key: Ed25519PublicKey | None = None,
    pruned_before: int | None = None,
    workers: int = 1,
    collect: Callable[[], EventSink] | None = None,
) -> CheckedTrail:
    """Verify the whole trail `settings` names (ConfigError when there is none to read).

    `workers` and `collect` as for `verify_files`: processes to check segments in, and event
    sinks that gather the report in the same pass.
    """
    if settings.sink == "postgres":
        if pruned_before is not None:
            raise ConfigError(
                "--pruned-before is for file trails: rows of the PostgreSQL trail cannot "
                "be deleted, so it always starts at seq 1"
            )
        return _verify_database(
            settings, key, public_key, scratch, workers=workers, collect=collect
        )
    files = trail_files(settings.path)
    if not files:
        raise ConfigError(f"{settings.path}: no audit trail found there")
    result = verify_files(
        files,
        key=key,
        public_key=public_key,
        head_of=settings.path,
        whole_trail=True,
        pruned_before=pruned_before if pruned_before is not None else settings.pruned_before,
        workers=workers,
        collect=collect,
    )
    return CheckedTrail(result, files)


def _verify_database(
    settings: AuditSettings,
    key: ChainKey | None,
    public_key: Ed25519PublicKey | None,
    scratch: Path,
    *,
    workers: int,
    collect: Callable[[], EventSink] | None,
) -> CheckedTrail:
    """Export the fleet's chain (one snapshot), verify it, and compare it with `audit_head`."""
    from proxy.audit.postgres_sink import export_trail  # noqa: PLC0415 - optional dependency

    sink = open_postgres_sink(settings, create=False)
    try:
        path, head = export_trail(sink, scratch)
    finally:
        sink.close()
    if head.seq == 0:
        raise ConfigError(f"{sink.describe()}: the audit trail there holds no events yet")
    result = verify_database_export(
        path, head, key=key, public_key=public_key, workers=workers, collect=collect
    )
    return CheckedTrail(result, [path], database=sink.describe())


@dataclass(frozen=True, slots=True)
class TrailReport:
    """Report rows, and why the trail they came from cannot be trusted (None: it verified)."""

    rows: list[ReportRow]
    problem: str | None
    events: int


def readable_audit_settings(config_path: Path) -> AuditSettings:
    """The config's `audit:` section, when it names a trail this process can read back.

    ConfigError when the section is invalid, auditing is off, or the sink is stdout (the trail
    is then in the log collector, not here).
    """
    settings = load_section(config_path, "audit", AuditSettings)
    if not settings.enabled or settings.sink == "stdout":
        raise ConfigError(
            "the audit trail is not readable here: audit.enabled is false or audit.sink is "
            "stdout (the trail is in your log collector); report from there"
        )
    return settings


def configured_report(config_path: Path, where: ReportFilter) -> TrailReport:
    """Verify the config's trail and report the disclosures `where` selects (blocking).

    ConfigError when the `audit:` section is invalid or names no trail that can be read.
    """
    settings = readable_audit_settings(config_path)
    with tempfile.TemporaryDirectory(prefix="phi-audit-") as scratch:
        checked = verify_configured_trail(settings, Path(scratch), key=audit_key(settings))
        rows = build_report((event for _, _, event in iter_events(checked.files)), where)
    problem = checked.result.problem
    return TrailReport(
        rows,
        None if problem is None else checked.where(problem),
        checked.result.events,
    )

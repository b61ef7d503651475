"""One verifying pass over the configured audit trail, gathering what a console view needs.

The console reads the trail exactly as `phi-audit verify|report` does (`verify_configured_trail`:
the files or the PostgreSQL export, the same key, the same rules, the same workers), and the
view's event sinks gather its data in that same pass. Everything read is kept when the trail
does not verify: the view shows it, marked, as `phi-audit report` prints its list with a
warning. The pass blocks (a large trail takes seconds): views run it through
`proxy.console.trail_reader`, in a process of its own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from keys.errors import PhiProxyError
from proxy.audit.factory import audit_key
from proxy.audit.parallel import auto_workers
from proxy.audit.trail_report import readable_audit_settings, verify_configured_trail

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.audit.segments import EventSink
    from proxy.audit.trail_report import CheckedTrail

__all__ = ["TrailPass", "Verification", "verified_pass"]

_Sink = TypeVar("_Sink", bound="EventSink")


@dataclass(frozen=True, slots=True)
class Verification:
    """What `phi-audit verify` would say of the trail the view was read from.

    `state`: `verified` (every event authentic, in order, nothing missing), `broken` (`problem`
    names the first line that fails, as `file:line: what`), or `unreadable` (`problem` says why
    no trail could be read: auditing off, no key, no file).
    """

    state: Literal["verified", "broken", "unreadable"]
    problem: str | None = None
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    checkpoints: int = 0
    signatures_checked: int = 0
    location: str = ""
    database: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def verified(self) -> bool:
        """True only for a trail that verifies."""
        return self.state == "verified"

    def summary(self) -> str:
        """One line: `phi-audit verify`'s OK line, or what is wrong."""
        if self.state == "verified":
            return (
                f"OK: {self.events} events (seq {self.first_seq}..{self.last_seq}) in "
                f"{self.location}, {self.checkpoints} checkpoint(s), "
                f"{self.signatures_checked} signature(s) checked"
            )
        if self.state == "broken":
            return f"BROKEN: {self.problem}"
        return f"UNREADABLE: {self.problem}"

    def evidence(self) -> str:
        """What to do with a broken trail (as `phi-audit verify` says it)."""
        kept = (
            "keep the database untouched (pg_dump the schema)"
            if self.database
            else "keep these files untouched"
        )
        return (
            f"the trail cannot be trusted from that line on; {kept} as evidence and "
            "investigate who could write it"
        )

    @classmethod
    def of(cls, checked: CheckedTrail) -> Verification:
        """The verification of a checked trail."""
        result = checked.result
        return cls(
            state="verified" if result.problem is None else "broken",
            problem=None if result.problem is None else checked.where(result.problem),
            events=result.events,
            first_seq=result.first_seq,
            last_seq=result.last_seq,
            checkpoints=result.checkpoints,
            signatures_checked=result.signatures_checked,
            location=checked.location(),
            database=checked.database is not None,
            notes=tuple(result.notes),
        )


@dataclass(frozen=True, slots=True)
class TrailPass(Generic[_Sink]):
    """The verification, and the sinks that gathered every parseable event (in trail order)."""

    verification: Verification
    sinks: list[_Sink]


def verified_pass(config_path: Path, collect: Callable[[], _Sink]) -> TrailPass[_Sink]:
    """Verify the config's trail as `phi-audit` does, feeding every event to `collect()` sinks.

    Blocking (see the module docstring). Never raises for a trail that cannot be read: the
    verification is then `unreadable` and says why, so the view can say it too.
    """
    try:
        settings = readable_audit_settings(config_path)
        key = audit_key(settings)
        with tempfile.TemporaryDirectory(prefix="phi-console-") as scratch:
            checked = verify_configured_trail(
                settings, Path(scratch), key=key, workers=auto_workers(), collect=collect
            )
    except PhiProxyError as exc:
        return TrailPass(Verification("unreadable", problem=str(exc)), [])
    except OSError as exc:
        why = f"{exc.__class__.__name__}: {exc.strerror or exc}"
        return TrailPass(Verification("unreadable", problem=f"cannot read the trail ({why})"), [])
    sinks: list[_Sink] = list(checked.result.collected)
    return TrailPass(Verification.of(checked), sinks)

"""Checking a trail: every line authentic, in order, linked, nothing missing; across rotations.

Verification stops at the first problem and names it as `file:line` with what it means:
an edited event (its MAC fails), a line format it does not know (`v`; every format ever written
is read, so a trail an upgrade switched from v1 to v2 mid-file verifies), a deleted one (a gap
in `seq`, a file that does not open with its genesis event, or — when the files are the whole
configured trail — a trail that does not start at seq 1 unless the operator says it was
pruned), a reordered or duplicated one (`seq` going backwards), or a broken link (`prev` is
not the hash of the line before). With only the checkpoint public key, links and signed
checkpoints are checked and events after the last signed checkpoint are reported as not
authenticated.

The files are checked as segments (`proxy.audit.segments`: each line on its own and each link
inside a segment), in parallel processes for a large trail (`proxy.audit.parallel`); this
module stitches the segments' results in trail order — the link into each segment's first
line, the rules for the trail's first event, the counts — so the outcome, down to the
`file:line` and the message, is the one a single pass gives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from proxy.audit.chain import GENESIS_PREV, line_hash
from proxy.audit.files import iter_events, trail_files
from proxy.audit.parallel import (
    MAX_SEGMENT_BYTES,
    MIN_PARALLEL_BYTES,
    check_segments,
    segment_bytes_for,
    split_file,
)
from proxy.audit.segments import Segment, SegmentResult, link_problem
from proxy.audit.sink import head_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxy.audit.chain import Head
    from proxy.audit.secrets import ChainKey
    from proxy.audit.segments import EventSink

__all__ = [
    "Problem",
    "VerifyResult",
    "iter_events",
    "trail_files",
    "verify_database_export",
    "verify_files",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing wrong with a trail, and where."""

    file: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"

    def in_database(self, database: str) -> str:
        """The place named as the database's row (in seq order), not the scratch file.

        For a trail read from PostgreSQL and checked by `verify_database_export`: `file` is only
        the export, which nobody can look at afterwards.
        """
        row = f" row {self.line} (in seq order)" if self.line else ""
        return f"{database} audit_events{row}: {self.message}"


@dataclass(slots=True)
class VerifyResult:
    """What verification saw; `problem` None means the trail is intact."""

    events: int = 0
    files: int = 0
    checkpoints: int = 0
    signatures_checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    problem: Problem | None = None
    notes: list[str] = field(default_factory=list)
    #: Processes the segments were checked in (1: this one).
    workers: int = 1
    #: The event sinks of `verify_files(collect=…)`, in trail order.
    collected: list[Any] = field(default_factory=list)


class _Start:
    """The rules for the trail's first event: seq 1 and genesis, or a start the caller allows."""

    def __init__(self, *, whole_trail: bool, pruned_before: int | None) -> None:
        self.whole_trail = whole_trail
        self.pruned_before = pruned_before

    def problem(self, seq: int, *, continues: bool, prev: object, notes: list[str]) -> str | None:
        """The problem with the trail's first event (seq `seq`), or None (maybe with a note)."""
        pruned = self.pruned_before
        if pruned is not None and seq != pruned:
            return (
                f"the trail starts at seq {seq}, not at seq {pruned} as --pruned-before says: "
                + (
                    f"the files holding seq {pruned}..{seq - 1} are missing (deleted or moved)"
                    if seq > pruned
                    else "give the first seq the trail now holds"
                )
            )
        if not continues:
            if seq != 1 or prev != GENESIS_PREV:
                return f"event seq {seq}: the first event of a trail must be seq 1"
            return None
        if pruned is not None:
            notes.append(
                f"the trail starts at seq {seq}: seq 1..{seq - 1} were pruned "
                f"(--pruned-before {pruned}) and were not checked"
            )
        elif self.whole_trail:
            return (
                f"the trail starts at seq {seq}: the files holding seq 1..{seq - 1} are "
                "missing (deleted or moved)"
            )
        else:
            notes.append(
                f"the files given start at seq {seq}: seq 1..{seq - 1} are in files not given "
                "(or were deleted); they were not checked — verify without FILE arguments to "
                "check the whole trail"
            )
        return None


@dataclass(slots=True)
class _Stitcher:
    """Joins segment results in trail order, as one pass over every line would see them."""

    start: _Start
    result: VerifyResult
    prev_seq: int | None = None
    prev_hash: str | None = None
    unauth: int | None = None

    def add(self, path: Path, line_base: int, seg: SegmentResult) -> Problem | None:
        """Fold in the segment of `path` whose first line is line `line_base + 1`."""
        result = self.result
        problem = seg.problem
        if problem is not None and problem[0] == 0 and not problem[2]:
            return Problem(path, line_base + 1, problem[1])
        if seg.first is not None:
            first = seg.first
            if self.prev_seq is not None:
                message = link_problem(first.seq, first.prev, self.prev_seq, self.prev_hash)
            else:
                message = self.start.problem(
                    first.seq, continues=first.continues, prev=first.prev, notes=result.notes
                )
            if message is not None:
                return Problem(path, line_base + 1, message)
            if result.first_seq is None:
                result.first_seq = first.seq
        result.events += seg.events
        result.checkpoints += seg.checkpoints
        result.signatures_checked += seg.signatures_checked
        if seg.last_seq is not None:
            self.prev_seq, self.prev_hash = seg.last_seq, seg.last_hash
            result.last_seq = seg.last_seq
        if seg.unauth_reset:
            self.unauth = seg.unauth_tail
        elif self.unauth is None:
            self.unauth = seg.unauth_head
        if problem is not None:
            return Problem(path, line_base + problem[0] + 1, problem[1])
        return None


def _stitch(
    plan: list[tuple[Path, list[Segment] | str]],
    results: Iterator[SegmentResult],
    stitcher: _Stitcher,
    *,
    collecting: bool,
) -> None:
    """Feed every segment's result to `stitcher`, in order, until the first problem.

    While `collecting`, the results after a problem are still read: their event sinks hold
    the rest of the trail for the report.
    """
    result = stitcher.result
    for path, part in plan:
        if result.problem is None:
            result.files += 1
        if isinstance(part, str):
            if result.problem is None:
                result.problem = Problem(path, 0, part)
            continue
        if result.problem is None and all(s.start == s.end for s in part):
            result.notes.append(f"{path} is empty")
        line_base = 0
        for _ in part:
            seg = next(results)
            result.collected.extend(seg.extra)
            if result.problem is None:
                result.problem = stitcher.add(path, line_base, seg)
                line_base += seg.lines
            elif not collecting:
                return


def _plan(
    files: list[Path], workers: int, segment_bytes: int | None
) -> list[tuple[Path, list[Segment] | str]]:
    """Each file's segments, or why it cannot be read."""
    sizes: list[tuple[Path, int | str]] = []
    for path in files:
        try:
            with path.open("rb") as handle:
                sizes.append((path, os.fstat(handle.fileno()).st_size))
        except OSError as exc:
            sizes.append((path, f"cannot read the file ({exc.strerror})"))
    total = sum(size for _, size in sizes if isinstance(size, int))
    if segment_bytes is None:
        parallel = workers > 1 and total >= MIN_PARALLEL_BYTES
        segment_bytes = (
            segment_bytes_for(total, workers)
            if parallel
            else min(max(total, 1), MAX_SEGMENT_BYTES)  # see MAX_SEGMENT_BYTES
        )
    plan: list[tuple[Path, list[Segment] | str]] = []
    for path, size in sizes:
        if isinstance(size, str):
            plan.append((path, size))
            continue
        try:
            plan.append((path, split_file(path, size, segment_bytes)))
        except OSError as exc:
            plan.append((path, f"cannot read the file ({exc.strerror})"))
    return plan


def verify_files(
    files: list[Path],
    *,
    key: ChainKey | None,
    public_key: Ed25519PublicKey | None = None,
    head_of: Path | None = None,
    whole_trail: bool = False,
    pruned_before: int | None = None,
    workers: int = 1,
    collect: Callable[[], EventSink] | None = None,
    segment_bytes: int | None = None,
    native: bool = True,
) -> VerifyResult:
    """Verify `files` as one trail, in the order given; stop at the first problem.

    `head_of`: the configured audit path, whose `.head` file records the last sequence number
    written; a trail that ends before it has lost its last events.
    `whole_trail`: `files` are the whole trail (the configured file and all its siblings), so
    one that starts after seq 1 has lost its oldest files — a problem, unless `pruned_before`
    is that first seq (the operator pruned the older files on purpose). Otherwise (a slice an
    auditor chose) such a start is only noted. `pruned_before`, when given, must be the first
    seq in either case.
    `workers`: processes to check segments of the trail in (see proxy.audit.parallel); the
    result is the same for any number. `collect`: makes one event sink per segment; every
    parseable event of every file (also after a problem) goes to one, and the sinks are
    returned in trail order in `result.collected` (the report reads the trail in this one pass).
    `segment_bytes`: cut files into segments of about this size and use the `workers` however
    small the trail (tests; default: automatic). `native`: the compiled core may vouch for
    intact segments (the same result; False: every line checked in Python, the tests' oracle).
    """
    stitcher = _Stitcher(
        _Start(whole_trail=whole_trail, pruned_before=pruned_before), VerifyResult()
    )
    result = stitcher.result
    plan = _plan(files, workers, segment_bytes)
    segments = [s for _, part in plan if not isinstance(part, str) for s in part]
    raw_key = key.reveal_for_hmac() if key is not None else None
    with check_segments(
        segments,
        raw_key,
        public_key,
        workers=workers,
        collect=collect,
        min_parallel_bytes=MIN_PARALLEL_BYTES if segment_bytes is None else 0,
        native=native,
    ) as (result.workers, results):
        _stitch(plan, results, stitcher, collecting=collect is not None)
    if result.problem is not None:
        return result
    if stitcher.unauth is not None:
        result.notes.append(
            f"events from seq {stitcher.unauth} on are after the last signed "
            "checkpoint: their order is checked but not their authenticity (needs the audit key)"
        )
    if head_of is not None:
        _check_head(head_of, files, result)
    return result


def _check_head(path: Path, files: list[Path], result: VerifyResult) -> None:
    try:
        recorded = orjson.loads(head_path(path).read_bytes())["seq"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return
    last = result.last_seq or 0
    if isinstance(recorded, int) and recorded > last and files:
        result.problem = Problem(
            files[-1],
            0,
            f"the trail ends at seq {last} but {head_path(path).name} records seq {recorded} "
            "as written: the last events were deleted (the file was truncated)",
        )


def verify_database_export(
    path: Path,
    head: Head,
    *,
    key: ChainKey | None,
    public_key: Ed25519PublicKey | None = None,
    workers: int = 1,
    collect: Callable[[], EventSink] | None = None,
) -> VerifyResult:
    """Verify a trail exported from PostgreSQL (`export_trail`), and its end against `head`.

    The exported file alone cannot show that the newest events were deleted or the last one
    replaced; `head` (the `audit_head` row the writers move in the same transaction) can.
    `phi-audit` and `phi-grants review` both check the fleet's trail with this, so a cut-off
    trail reads the same in both.
    """
    result = verify_files([path], key=key, public_key=public_key, workers=workers, collect=collect)
    if result.problem is None:
        result.problem = _head_row_problem(path, head, result.last_seq or 0)
    return result


def _head_row_problem(path: Path, head: Head, last: int) -> Problem | None:
    if head.seq != last:
        what = (
            "the newest events were deleted"
            if head.seq > last
            else "audit_head was moved back (its trigger was bypassed)"
        )
        return Problem(
            path,
            0,
            f"the trail ends at seq {last} but audit_head records seq {head.seq} as written: "
            + what,
        )
    if head.hash != line_hash(_last_line(path)):
        return Problem(
            path,
            last,
            f"event seq {last} is not the event audit_head records as the last one written: "
            "it was replaced",
        )
    return None


def _last_line(path: Path) -> bytes:
    with path.open("rb") as handle:
        last = b""
        for last in handle:  # noqa: B007 - the loop's purpose is its last value
            pass
    return last.rstrip(b"\n")

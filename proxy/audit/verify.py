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
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from proxy.audit.chain import (
    GENESIS_PREV,
    READABLE_VERSIONS,
    canonical,
    line_hash,
    mac_of,
    signature_ok,
)
from proxy.audit.files import iter_events, trail_files
from proxy.audit.sink import head_path

if TYPE_CHECKING:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxy.audit.chain import Head
    from proxy.audit.secrets import ChainKey

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


def _unknown_version(event: dict[str, Any], seq: int) -> str | None:
    """The problem with a line whose format (`v`) this code cannot read, or None."""
    version = event.get("v")
    if type(version) is int and version in READABLE_VERSIONS:
        return None
    known = ", ".join(map(str, READABLE_VERSIONS))
    return (
        f"event seq {seq}: line format v={orjson.dumps(version).decode()} is not one this "
        f"phi-audit reads ({known}) — written by a newer phi-proxy (verify with its phi-audit) "
        "or edited"
    )


class _Verifier:
    def __init__(
        self,
        key: ChainKey | None,
        public_key: Ed25519PublicKey | None,
        *,
        whole_trail: bool = False,
        pruned_before: int | None = None,
    ) -> None:
        self.key = key
        self.public_key = public_key
        self.whole_trail = whole_trail
        self.pruned_before = pruned_before
        self.result = VerifyResult()
        self.prev_hash: str | None = None
        self.prev_seq: int | None = None
        self.unauthenticated_since: int | None = None

    def _start(self, seq: int, *, continues: bool, prev: object) -> str | None:
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
            self.result.notes.append(
                f"the trail starts at seq {seq}: seq 1..{seq - 1} were pruned "
                f"(--pruned-before {pruned}) and were not checked"
            )
        elif self.whole_trail:
            return (
                f"the trail starts at seq {seq}: the files holding seq 1..{seq - 1} are "
                "missing (deleted or moved)"
            )
        else:
            self.result.notes.append(
                f"the files given start at seq {seq}: seq 1..{seq - 1} are in files not given "
                "(or were deleted); they were not checked — verify without FILE arguments to "
                "check the whole trail"
            )
        return None

    def line(self, raw: bytes, *, first_in_file: bool) -> str | None:  # noqa: C901, PLR0911, PLR0912
        """Check one line; the problem text, or None."""
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return "not valid JSON: the line was edited or cut short"
        if not isinstance(event, dict) or not isinstance(event.get("seq"), int):
            return "not an audit event (no sequence number): the line was edited"
        seq, prev = event["seq"], event.get("prev")
        if self.key is not None:
            body = {k: v for k, v in event.items() if k != "mac"}
            mac = event.get("mac")
            if not isinstance(mac, str) or not hmac.compare_digest(mac, mac_of(self.key, body)):
                return (
                    f"event seq {seq}: MAC does not match — this event was edited (or the trail "
                    "was written with a different audit key)"
                )
        if canonical(event) != raw:
            return f"event seq {seq}: not in canonical form — the line was edited"
        unknown = _unknown_version(event, seq)
        if unknown is not None:
            return unknown
        if first_in_file and event.get("type") != "genesis":
            return (
                f"event seq {seq}: the file does not start with its genesis event — lines at the "
                "start of this file were deleted"
            )
        if self.prev_seq is not None and seq != self.prev_seq + 1:
            expected = self.prev_seq + 1
            if seq > expected:
                return (
                    f"event seq {seq} follows seq {self.prev_seq}: events {expected}..{seq - 1} "
                    "are missing here (deleted or moved, or a rotated file was not given)"
                )
            return (
                f"event seq {seq} follows seq {self.prev_seq}: events were reordered or duplicated"
            )
        if self.prev_hash is not None and prev != self.prev_hash:
            return (
                f"event seq {seq}: does not link to the line before it (prev hash mismatch) — "
                "the previous event was edited or replaced"
            )
        if self.prev_hash is None:
            start = self._start(seq, continues=bool(event.get("continues")), prev=prev)
            if start is not None:
                return start
        if event.get("type") == "checkpoint":
            self.result.checkpoints += 1
            if self.public_key is not None and event.get("sig") is not None:
                if not signature_ok(self.public_key, event):
                    return f"checkpoint seq {seq}: the signature does not verify"
                self.result.signatures_checked += 1
                self.unauthenticated_since = None
        elif self.key is None and self.unauthenticated_since is None:
            self.unauthenticated_since = seq
        self.prev_seq, self.prev_hash = seq, line_hash(raw)
        self.result.events += 1
        if self.result.first_seq is None:
            self.result.first_seq = seq
        self.result.last_seq = seq
        return None


def verify_files(
    files: list[Path],
    *,
    key: ChainKey | None,
    public_key: Ed25519PublicKey | None = None,
    head_of: Path | None = None,
    whole_trail: bool = False,
    pruned_before: int | None = None,
) -> VerifyResult:
    """Verify `files` as one trail, in the order given; stop at the first problem.

    `head_of`: the configured audit path, whose `.head` file records the last sequence number
    written; a trail that ends before it has lost its last events.
    `whole_trail`: `files` are the whole trail (the configured file and all its siblings), so
    one that starts after seq 1 has lost its oldest files — a problem, unless `pruned_before`
    is that first seq (the operator pruned the older files on purpose). Otherwise (a slice an
    auditor chose) such a start is only noted. `pruned_before`, when given, must be the first
    seq in either case.
    """
    checker = _Verifier(key, public_key, whole_trail=whole_trail, pruned_before=pruned_before)
    result = checker.result
    for path in files:
        result.files += 1
        try:
            handle = path.open("rb")
        except OSError as exc:
            result.problem = Problem(path, 0, f"cannot read the file ({exc.strerror})")
            return result
        with handle:
            number = 0
            for number, raw in enumerate(handle, 1):
                message = checker.line(raw.rstrip(b"\n"), first_in_file=number == 1)
                if message is not None:
                    result.problem = Problem(path, number, message)
                    return result
            if number == 0:
                result.notes.append(f"{path} is empty")
    if checker.unauthenticated_since is not None:
        result.notes.append(
            f"events from seq {checker.unauthenticated_since} on are after the last signed "
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
) -> VerifyResult:
    """Verify a trail exported from PostgreSQL (`export_trail`), and its end against `head`.

    The exported file alone cannot show that the newest events were deleted or the last one
    replaced; `head` (the `audit_head` row the writers move in the same transaction) can.
    `phi-audit` and `phi-grants review` both check the fleet's trail with this, so a cut-off
    trail reads the same in both.
    """
    result = verify_files([path], key=key, public_key=public_key)
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

"""Batch jobs over a live table: rewrap tokens, or encrypt legacy plaintext, resumably.

A job reads a batch of rows, computes the new values in memory (plaintext never leaves this
process), and commits the batch's compare-and-set updates together with its progress row (see
`keys.table`). Progress is keyed by the job name (command, table, columns), so an interrupted
run resumes where the last committed batch ended; a finished run clears its progress, so the
next run (after another rotation, say) starts again from the top. Both jobs are idempotent on
their own: rewrap leaves tokens under the primary key alone, encrypt-existing leaves every value
that is exactly one token alone, so even a re-run from scratch changes nothing twice.

Before the first batch the key column is checked (no NULLs, no duplicates): keyset paging would
skip such rows silently. Values encrypt-existing cannot judge (not text; text that holds
"phi1." without being one whole token) are left as they are and reported per column, and the
command then ends with status 1: they may still be plaintext PHI.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from keys.errors import KeyringError
from keys.rewrap import TokenCensus, TokenRewrapper, count_tokens, rewrite_text
from keys.table import BlobText, Row, Update
from keys.token_format import TOKEN_PATTERN, TOKEN_PREFIX, kid_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from keys.keyring import Keyring
    from keys.table import Table

__all__ = [
    "EncryptPlan",
    "JobResult",
    "encrypt_row",
    "rewrap_row",
    "run_table_job",
]

DEFAULT_BATCH: Final = 500


@dataclass
class JobResult:
    """Totals of one run (this invocation, plus rows done before a resume)."""

    rows: int = 0
    resumed_at: int = 0
    updated: int = 0
    conflicts: int = 0
    census: TokenCensus = field(default_factory=TokenCensus)
    skipped: Counter[str] = field(default_factory=Counter)
    #: (reason, column) -> values left unchanged that may still be plaintext PHI.
    unresolved: Counter[tuple[str, str]] = field(default_factory=Counter)


#: Reasons in `JobResult.unresolved`, and what each means for an operator.
NOT_TEXT: Final = "not-text"
NOT_A_TOKEN: Final = "not-a-token"  # noqa: S105 - a reason code, not a secret


@dataclass(frozen=True, slots=True)
class EncryptPlan:
    """Which field class each column gets, and which classes are deterministic (AES-SIV)."""

    classes: Mapping[str, str]
    deterministic: frozenset[str]


def rewrap_row(
    keyring: Keyring, on_rewrapped: Callable[[str, str], None] | None = None
) -> Callable[[Row, JobResult], list[Update]]:
    """Per-row step of `rewrap`: every token in every selected text column, rewrapped.

    `on_rewrapped(old, new)` sees each replaced token (keys.canary_follow).
    """

    def step(row: Row, result: JobResult) -> list[Update]:
        rewrapper = TokenRewrapper(keyring, result.census, on_rewrapped=on_rewrapped)
        updates = []
        for column, value in row.values.items():
            if isinstance(value, str):
                new = rewrite_text(value, rewrapper)
                if new != value:
                    updates.append(Update(row.key, column, value, new))
        return updates

    return step


def encrypt_row(keyring: Keyring, plan: EncryptPlan) -> Callable[[Row, JobResult], list[Update]]:
    """Per-row step of `encrypt-existing`: encrypt plaintext values; leave tokens alone."""

    def step(row: Row, result: JobResult) -> list[Update]:
        updates = []
        practice = None if row.practice is None else str(row.practice)
        for column, value in row.values.items():
            if value is None:
                result.skipped["null"] += 1
                continue
            reason = _not_plaintext(value, result)
            if reason is not None or not isinstance(value, str):
                _leave_alone(result, reason or NOT_TEXT, column)
                continue
            if practice is None or practice not in keyring.practices():
                result.skipped["unknown-practice"] += 1
                continue
            field_class = plan.classes[column]
            try:
                token = keyring.encrypt(
                    practice,
                    field_class,
                    value,
                    deterministic=field_class in plan.deterministic,
                )
            except KeyringError:  # the practice has no active key (shredded)
                result.skipped["no-active-key"] += 1
                continue
            result.census.after[kid_of(token)] += 1
            result.census.changed += 1
            updates.append(Update(row.key, column, value, token))
        return updates

    return step


def _leave_alone(result: JobResult, reason: str, column: str) -> None:
    """Count a value encrypt-existing leaves unchanged; all but tokens need an operator's look."""
    result.skipped[reason] += 1
    if reason != "already-token":
        result.unresolved[reason, column] += 1


def _not_plaintext(value: object, result: JobResult) -> str | None:
    """Why encrypt-existing must leave `value` alone, or None when it is plaintext to encrypt.

    Only a value that is entirely one token is encrypted already; text that merely contains
    "phi1." (an e-mail address, a typo) may be PHI, and so may a number or a BLOB.
    """
    if isinstance(value, str) and TOKEN_PATTERN.fullmatch(value):
        count_tokens(value, result.census)
        return "already-token"
    if not isinstance(value, str) or isinstance(value, BlobText):
        return NOT_TEXT
    if TOKEN_PREFIX in value:
        count_tokens(value, result.census)  # tokens inside still count for retire
        return NOT_A_TOKEN
    return None


def run_table_job(
    table: Table,
    job: str,
    step: Callable[[Row, JobResult], list[Update]],
    *,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
    restart: bool = False,
    pause: float = 0.0,
    after_batch: Callable[[JobResult, int], None] | None = None,
    before_commit: Callable[[], None] | None = None,
) -> JobResult:
    """Run `step` over every row in key order, committing per batch with progress.

    `before_commit()` runs before each batch is committed, and an error from it stops the job
    with that batch uncommitted (rewrap: registering rewrapped canary tokens). `after_batch(
    result, total_rows)` is called after each committed batch (progress output, flushing usage
    counters). `dry_run` computes everything and writes nothing, from the top.
    """
    result = JobResult()
    table.check_key()
    total = table.count()
    last = None
    if restart and not dry_run:
        table.clear_progress(job)
    saved = None if dry_run else table.progress(job)
    if saved is not None:
        last, result.resumed_at = saved
        result.rows = result.resumed_at
    while rows := table.fetch(last, batch_size):
        updates: list[Update] = []
        for row in rows:
            updates.extend(step(row, result))
        last = rows[-1].key
        result.rows += len(rows)
        if not dry_run:
            if before_commit is not None:
                before_commit()
            changed = table.commit_batch(updates, job, last, result.rows)
            result.updated += changed
            result.conflicts += len(updates) - changed
        if after_batch is not None:
            after_batch(result, total)
        if pause:
            time.sleep(pause)
    if not dry_run:
        table.clear_progress(job)
    return result

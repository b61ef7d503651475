"""Batch jobs over a live table: rewrap tokens, or encrypt legacy plaintext, resumably.

A job reads a batch of rows, computes the new values in memory (plaintext never leaves this
process), and commits the batch's compare-and-set updates together with its progress row (see
`keys.table`). Progress is keyed by the job name (command, table, columns), so an interrupted
run resumes where the last committed batch ended; a finished run clears its progress, so the
next run (after another rotation, say) starts again from the top. Both jobs are idempotent on
their own: rewrap leaves tokens under the primary key alone, encrypt-existing leaves every value
that already contains a token alone, so even a re-run from scratch changes nothing twice.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from keys.errors import KeyringError
from keys.rewrap import TokenCensus, TokenRewrapper, count_tokens, rewrite_text
from keys.table import Row, Update
from keys.token_format import TOKEN_PREFIX, kid_of

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


@dataclass(frozen=True, slots=True)
class EncryptPlan:
    """Which field class each column gets, and which classes are deterministic (AES-SIV)."""

    classes: Mapping[str, str]
    deterministic: frozenset[str]


def rewrap_row(keyring: Keyring) -> Callable[[Row, JobResult], list[Update]]:
    """Per-row step of `rewrap`: every token in every selected text column, rewrapped."""

    def step(row: Row, result: JobResult) -> list[Update]:
        rewrapper = TokenRewrapper(keyring, result.census)
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
            if not isinstance(value, str):
                result.skipped["not-text"] += 1
                continue
            if TOKEN_PREFIX in value:
                count_tokens(value, result.census)  # already encrypted (or holds a token)
                result.skipped["already-token"] += 1
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
) -> JobResult:
    """Run `step` over every row in key order, committing per batch with progress.

    `after_batch(result, total_rows)` is called after each committed batch (progress output,
    flushing usage counters). `dry_run` computes everything and writes nothing, from the top.
    """
    result = JobResult()
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

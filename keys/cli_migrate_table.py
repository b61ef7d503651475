"""Run `rewrap` or `encrypt-existing` over a live table, batch by batch, showing progress.

Each batch commits on its own and the run records how far it got, so a database error or an
interrupted run loses nothing: the same command resumes after the last committed batch.
Progress goes to stderr (a bar on a terminal, one line per batch otherwise), keeping stdout for
the report.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import re
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from keys.errors import ConfigError, KeyringError
from keys.migrate import NOT_A_TOKEN, NOT_TEXT, run_table_job
from keys.table import TableSpec
from keys.table_backends import open_table

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from keys.migrate import JobResult
    from keys.usage import UsageCounter

__all__ = [
    "check_unresolved",
    "is_database_error",
    "note_counts",
    "run_table_command",
    "split_columns",
]

_RESUME = "committed batches are kept; run the same command again to resume"


def split_columns(text: str) -> list[tuple[str, str | None]]:
    """`--columns ssn:ssn,note` as (column, field class or None) pairs."""
    out: list[tuple[str, str | None]] = []
    for item in text.split(","):
        name, _, field_class = item.strip().partition(":")
        out.append((name, field_class or None))
    return out


def _progress(command: str) -> Callable[[JobResult, int], None]:
    tty = sys.stderr.isatty()

    def show(result: JobResult, total: int) -> None:
        done = min(result.rows, total) if total else result.rows
        width = 30
        filled = width * done // total if total else width
        bar = "#" * filled + "-" * (width - filled)
        pct = 100 * done // total if total else 100
        line = (
            f"{command}: [{bar}] {pct:3d}% {result.rows}/{total} rows, "
            f"{result.updated} values written"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)

    return show


_UTF8_ERROR = re.compile(r"Could not decode to UTF-8 column '([A-Za-z_][A-Za-z0-9_]*)'")


def is_database_error(exc: BaseException) -> bool:
    """An error raised by SQLite or asyncpg (whose message may quote a stored value)."""
    return isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("asyncpg")


def _db_message(exc: BaseException, columns: tuple[str, ...]) -> str:
    """The error's type and a fixed explanation, never its text: databases quote cell values.

    SQLite's "Could not decode to UTF-8 column 'c' with text '…'" carries the stored value
    (PHI); only a column name that is one of ours is taken from it.
    """
    kind = type(exc).__name__
    found = _UTF8_ERROR.match(str(exc))
    if found is not None and found.group(1) in columns:
        return (
            f"{kind}: column {found.group(1)} holds a value that is not valid UTF-8 text "
            "(legacy Latin-1 data?); convert that column's values to UTF-8 first. The value "
            "is not shown because it may be PHI"
        )
    return (
        f"{kind}; its message is not shown because databases quote stored values, which may "
        "be PHI; the database server's own log has the details"
    )


def _unresolved_lines(result: JobResult) -> list[str]:
    """One line per (reason, column) of values left unchanged that may still be plaintext."""
    what = {
        NOT_TEXT: "are not text (a number or BLOB), so they were not encrypted",
        NOT_A_TOKEN: 'contain "phi1." but are not one whole token, so they were not encrypted',
    }
    return [
        f"  column {column}: {n} values {what[reason]}"
        for (reason, column), n in sorted(result.unresolved.items(), key=lambda kv: kv[0][::-1])
    ]


def note_counts(args: argparse.Namespace, **counts: int) -> None:
    """Record on `args` what the run has committed so far (merged with earlier counts).

    `phi-keys` audits a key change from these counts whenever `values_written` is above 0,
    also when the command then fails or exits 1: committed batches stay committed.
    """
    args.counts = {**(getattr(args, "counts", None) or {}), **counts}


def check_unresolved(command: str, result: JobResult, *, dry_run: bool) -> None:
    """Fail (status 1) when values were left that may still be plaintext PHI.

    Call after the run's summary. Everything else was committed; the rows are named only by
    column, never by value.
    """
    if not result.unresolved:
        return
    lines = _unresolved_lines(result)
    total = sum(result.unresolved.values())
    if dry_run:
        print(f"{command}: {total} values would be left as they are:", file=sys.stderr)
        print("\n".join(lines), file=sys.stderr)
        return
    raise KeyringError(
        f"{command}: {total} values still hold what may be plaintext PHI and were left "
        "unchanged; every other value was processed and committed:\n"
        + "\n".join(lines)
        + "\nLook at those rows (convert numbers/BLOBs to text, or fix values that only "
        "look like tokens), then run the same command again"
    )


def run_table_command(
    args: argparse.Namespace,
    command: str,
    *,
    counter: UsageCounter,
    step: Callable[[Any, JobResult], Any],
    practice_column: str | None = None,
    job_state: str = "",
    before_commit: Callable[[], None] | None = None,
) -> JobResult:
    """Apply `step` to every row of --table; a database error says how to resume.

    The job's name (its progress row) includes the table, key, columns and `job_state`: a run
    resumes only the same job, so a changed `job_state` (rewrap: the current keys) starts over.
    """
    if not args.dsn or not args.table or not args.columns:
        raise ConfigError(f"{command}: table mode needs --dsn, --table and --columns")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be 1 or more")
    columns = tuple(split_columns(args.columns))
    spec = TableSpec(args.table, args.key_column, tuple(c for c, _ in columns), practice_column)
    show = _progress(command)

    def after_batch(result: JobResult, total: int) -> None:
        if not args.dry_run:
            note_counts(
                args,
                rows_scanned=result.rows,
                values_written=result.updated,
                conflicts=result.conflicts,
            )
        counter.flush()
        show(result, total)

    job = f"{command}:{spec.table}:{spec.key}:{','.join(spec.columns)}" + (
        f":{job_state}" if job_state else ""
    )
    table = open_table(args.dsn, spec)
    try:
        result = run_table_job(
            table,
            job,
            step,
            batch_size=args.batch_size,
            dry_run=args.dry_run,
            restart=args.restart,
            pause=args.pause,
            after_batch=after_batch,
            before_commit=before_commit,
        )
    except Exception as exc:
        if is_database_error(exc):
            raise KeyringError(
                f"{command}: database error ({_db_message(exc, spec.columns)}); {_RESUME}"
            ) from None
        raise
    finally:
        table.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if result.resumed_at:
        print(f"resumed after {result.resumed_at} rows done by an earlier, interrupted run")
    return result

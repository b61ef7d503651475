"""Run `rewrap` or `encrypt-existing` over a live table, batch by batch, showing progress.

Each batch commits on its own and the run records how far it got, so a database error or an
interrupted run loses nothing: the same command resumes after the last committed batch.
Progress goes to stderr (a bar on a terminal, one line per batch otherwise), keeping stdout for
the report.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from keys.errors import ConfigError, KeyringError
from keys.migrate import run_table_job
from keys.table import TableSpec, open_table

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from keys.migrate import JobResult
    from keys.usage import UsageCounter

__all__ = ["run_table_command", "split_columns"]

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


def _db_message(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}"


def run_table_command(
    args: argparse.Namespace,
    command: str,
    *,
    counter: UsageCounter,
    step: Callable[[Any, JobResult], Any],
    practice_column: str | None = None,
) -> JobResult:
    """Apply `step` to every row of --table; a database error says how to resume."""
    if not args.dsn or not args.table or not args.columns:
        raise ConfigError(f"{command}: table mode needs --dsn, --table and --columns")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be 1 or more")
    columns = tuple(split_columns(args.columns))
    spec = TableSpec(args.table, args.key_column, tuple(c for c, _ in columns), practice_column)
    show = _progress(command)

    def after_batch(result: JobResult, total: int) -> None:
        counter.flush()
        show(result, total)

    job = f"{command}:{spec.table}:{','.join(spec.columns)}"
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
        )
    except Exception as exc:
        if isinstance(exc, sqlite3.Error) or type(exc).__module__.startswith("asyncpg"):
            raise KeyringError(
                f"{command}: database error ({_db_message(exc)}); {_RESUME}"
            ) from None
        raise
    finally:
        table.close()
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if result.resumed_at:
        print(f"resumed after {result.resumed_at} rows done by an earlier, interrupted run")
    return result

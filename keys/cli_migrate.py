"""`phi-keys rewrap` and `phi-keys encrypt-existing`: re-encrypt data that is already stored.

Both run inside this one process: tokens are opened and values encrypted in memory, and only
tokens are written out. Progress goes to stderr (a bar on a terminal, one line per batch
otherwise); the final per-key-version count goes to stdout. Exit status 1 when the run finished
but left something behind (tokens it could not open, rows of an unknown practice), so a script
never mistakes a partial migration for a complete one.

This module holds their options; `keys.cli_rewrap` and `keys.cli_encrypt_existing` run them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keys.cli_encrypt_existing import run_encrypt_existing
from keys.cli_migrate_counts import census_lines, save_counts
from keys.cli_rewrap import run_rewrap
from keys.migrate import DEFAULT_BATCH

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from keys.settings import KeySettings

__all__ = ["add_migrate_commands", "census_lines", "save_counts", "table_arguments"]


def table_arguments(p: argparse.ArgumentParser, *, key_flag: str = "--key") -> None:
    """The table-mode flags shared by rewrap, encrypt-existing and retire --dsn."""
    p.add_argument("--dsn", metavar="DSN", help="sqlite:///file.db or postgresql://user@host/db")
    p.add_argument("--table", metavar="TABLE", help="table (or schema.table) to process")
    p.add_argument("--columns", metavar="COLS", help="comma-separated columns holding values")
    p.add_argument(
        key_flag,
        dest="key_column",
        default="id",
        metavar="COLUMN",
        help="unique, integer or text key column that orders the batches (default: id)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, metavar="N")
    p.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sleep between batches to spare a busy production database",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="count only; write nothing")
    p.add_argument(
        "--restart",
        action="store_true",
        help="ignore the saved progress of an interrupted run and start from the top",
    )


def add_migrate_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
    with_settings: Callable[[Callable[[argparse.Namespace, KeySettings], int]], Any],
) -> None:
    """Register `rewrap` and `encrypt-existing` on the phi-keys parser."""
    p = command(
        "rewrap",
        "re-encrypt tokens under each practice's current key, in a file/stream or a live table",
    )
    p.add_argument("--in", dest="input", metavar="FILE", help="text to rewrap (- for stdin)")
    p.add_argument("--out", dest="output", metavar="FILE", help="where to write it (- for stdout)")
    table_arguments(p)
    _run_options(p)
    p.set_defaults(handler=with_settings(run_rewrap))

    p = command(
        "encrypt-existing",
        "encrypt legacy plaintext PHI in a live table; values holding tokens are left alone",
    )
    table_arguments(p)
    p.add_argument("--practice-column", metavar="COLUMN", help="column naming each row's practice")
    p.add_argument("--field", metavar="CLASS", help="field class for every column")
    p.add_argument(
        "--deterministic",
        metavar="CLASSES",
        help="comma-separated classes to encrypt with AES-SIV when the config has no "
        "fields.classes section (otherwise the config decides)",
    )
    _run_options(p)
    p.set_defaults(handler=with_settings(run_encrypt_existing))

"""`phi-keys rewrap` and `phi-keys encrypt-existing`: re-encrypt data that is already stored.

Both run inside this one process: tokens are opened and values encrypted in memory, and only
tokens are written out. Progress goes to stderr (a bar on a terminal, one line per batch
otherwise); the final per-key-version count goes to stdout. Exit status 1 when the run finished
but left something behind (tokens it could not open, rows of an unknown practice), so a script
never mistakes a partial migration for a complete one.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from keys._file_ops import write_atomic
from keys.config_file import read_config_mapping, resolve_config_path
from keys.errors import ConfigError, KeyringError
from keys.migrate import DEFAULT_BATCH, EncryptPlan, encrypt_row, rewrap_row, run_table_job
from keys.rewrap import TokenRewrapper, count_tokens, rewrite_stream
from keys.table import TableSpec, open_table
from keys.token_format import is_field_class
from keys.usage import UsageCounter, open_counting_keyring, unsaved_warning, usage_counter

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    from keys.keyring import Keyring
    from keys.migrate import JobResult
    from keys.rewrap import TokenCensus
    from keys.settings import KeySettings

__all__ = ["add_migrate_commands", "census_lines", "save_counts", "table_arguments"]

_EXIT_LEFT_BEHIND = 1


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


def census_lines(census: TokenCensus, keyring: Keyring, *, after: bool = True) -> list[str]:
    """Readable per-key-version counts (practice, version, state, kid) plus unopenable tokens."""
    infos = {i.kid: i for i in keyring.infos()}
    counts = census.after if after else census.before
    lines = []
    for kid, n in sorted(counts.items(), key=lambda kv: (str(infos.get(kv[0])), kv[0])):
        info = infos.get(kid)
        where = f"{info.practice} v{info.version} {info.state.value}" if info else "unknown key"
        lines.append(f"  {kid}  {where:<40} {n}")
    if census.unopenable:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(census.unopenable.items()))
        lines.append(f"  left unchanged (cannot be opened): {reasons}")
    return lines


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


def _table_job(
    args: argparse.Namespace,
    command: str,
    *,
    counter: UsageCounter,
    step: Callable[[Any, JobResult], Any],
    practice_column: str | None = None,
) -> JobResult:
    if not args.dsn or not args.table or not args.columns:
        raise ConfigError(f"{command}: table mode needs --dsn, --table and --columns")
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be 1 or more")
    columns = tuple(_split_columns(args.columns))
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
    except sqlite3.Error as exc:
        raise KeyringError(f"{command}: database error ({_db_message(exc)}); {_RESUME}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("asyncpg"):
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


_RESUME = "committed batches are kept; run the same command again to resume"


def _db_message(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first[:200]}"


def _split_columns(text: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for item in text.split(","):
        name, _, field_class = item.strip().partition(":")
        out.append((name, field_class or None))
    return out


def _open(settings: KeySettings) -> tuple[Keyring, UsageCounter]:
    counter = usage_counter(settings)
    return open_counting_keyring(settings, counter), counter


def save_counts(counter: UsageCounter) -> None:
    """Flush the run's encryption counts; if they cannot be saved, say so on stderr."""
    counter.flush()
    warning = unsaved_warning(counter)
    if warning is not None:
        print(f"phi-keys: {warning}", file=sys.stderr)


def _cmd_rewrap(args: argparse.Namespace, settings: KeySettings) -> int:
    keyring, counter = _open(settings)
    if args.input is not None:
        if args.dsn:
            raise ConfigError("rewrap: use either --in/--out (a file) or --dsn (a table)")
        census = _rewrap_file(args, TokenRewrapper(keyring))
        save_counts(counter)
    else:
        result = _table_job(args, "rewrap", counter=counter, step=rewrap_row(keyring))
        save_counts(counter)
        census = result.census
        verb = "would be" if args.dry_run else "were"
        print(f"{result.rows} rows scanned; {census.changed} tokens {verb} rewrapped")
        if result.conflicts:
            print(
                f"{result.conflicts} values changed by someone else meanwhile and were left "
                "alone (the proxy wrote them under the current key; re-run to check)"
            )
    report = sys.stderr if args.output == "-" else sys.stdout  # never mixed into the data
    print(
        "tokens per key version" + (" (before)" if args.dry_run else " (after)") + ":", file=report
    )
    for line in census_lines(census, keyring, after=not args.dry_run):
        print(line, file=report)
    if census.unopenable and not args.dry_run:
        print(
            f"phi-keys: {sum(census.unopenable.values())} tokens could not be rewrapped and "
            "still use their old key: do not retire those keys yet",
            file=sys.stderr,
        )
        return _EXIT_LEFT_BEHIND
    return 0


def _rewrap_file(args: argparse.Namespace, rewrapper: TokenRewrapper) -> TokenCensus:
    out = args.output
    if args.dry_run:
        with _reader(args.input) as source:
            rewrite_stream(source, None, _counting_only(rewrapper.census))
        return rewrapper.census
    if out is None:
        raise ConfigError("rewrap --in needs --out FILE or --out - (stdout), or --dry-run")
    if out != "-" and args.input != "-" and Path(out).resolve() == Path(args.input).resolve():
        raise ConfigError("rewrap: --out must differ from --in (the result replaces nothing)")
    if out == "-":
        with _reader(args.input) as source:
            rewrite_stream(source, sys.stdout.buffer, rewrapper)
        sys.stdout.buffer.flush()
        return rewrapper.census
    tmp = Path(out).with_name(f".{Path(out).name}.partial")
    with _reader(args.input) as source, tmp.open("wb") as sink:
        tmp.chmod(0o600)
        rewrite_stream(source, sink, rewrapper)
    write_atomic(Path(out), tmp.read_bytes())
    tmp.unlink()
    return rewrapper.census


def _counting_only(census: TokenCensus) -> Callable[[str], str]:
    def count(token: str) -> str:
        count_tokens(token, census)
        return token

    return count


def _reader(name: str) -> BinaryIO:
    if name == "-":
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    try:
        return Path(name).open("rb")
    except OSError as exc:
        raise KeyringError(f"{name}: cannot read ({exc.strerror})") from None


def _plan(args: argparse.Namespace, config: Path) -> EncryptPlan:
    columns = _split_columns(args.columns or "")
    classes: dict[str, str] = {}
    for name, field_class in columns:
        chosen = field_class or args.field
        if chosen is None:
            raise ConfigError(
                f"encrypt-existing: column {name} has no field class: write --columns "
                f"{name}:CLASS or pass --field CLASS for every column"
            )
        if not is_field_class(chosen):
            raise ConfigError(f"encrypt-existing: {chosen!r} is not a valid field class")
        classes[name] = chosen
    raw = read_config_mapping(config).get("fields") or {}
    configured = raw.get("classes") if isinstance(raw, dict) else None
    deterministic = {c for c in (args.deterministic or "").split(",") if c}
    if isinstance(configured, dict) and configured:
        for name, spec in configured.items():
            if isinstance(spec, dict) and spec.get("deterministic") is True:
                deterministic.add(str(name))
        missing = sorted(set(classes.values()) - set(configured))
        if missing:
            raise ConfigError(
                f"encrypt-existing: field class {missing[0]} is not defined under "
                "fields.classes in the config, so the proxy would not know how to show it; "
                "add it there first"
            )
    return EncryptPlan(classes, frozenset(deterministic))


def _cmd_encrypt_existing(args: argparse.Namespace, settings: KeySettings) -> int:
    if not args.practice_column:
        raise ConfigError("encrypt-existing needs --practice-column (the practice of each row)")
    plan = _plan(args, resolve_config_path(args.config))
    keyring, counter = _open(settings)
    step = encrypt_row(keyring, plan)
    result = _table_job(
        args, "encrypt-existing", counter=counter, step=step, practice_column=args.practice_column
    )
    save_counts(counter)
    verb = "would be" if args.dry_run else "were"
    print(f"{result.rows} rows scanned; {result.census.changed} values {verb} encrypted")
    for reason, n in sorted(result.skipped.items()):
        print(f"  skipped ({reason}): {n}")
    if result.conflicts:
        print(f"{result.conflicts} values changed meanwhile and were left alone; re-run")
    print("tokens per key version:")
    for line in census_lines(result.census, keyring):
        print(line)
    left = result.skipped["unknown-practice"] + result.skipped["no-active-key"]
    if left and not args.dry_run:
        print(
            f"phi-keys: {left} values are still plaintext because their practice has no key; "
            "add the practice (`phi-keys add-practice`) and run again with --restart",
            file=sys.stderr,
        )
        return _EXIT_LEFT_BEHIND
    return 0


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
    p.set_defaults(handler=with_settings(_cmd_rewrap))

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
    p.set_defaults(handler=with_settings(_cmd_encrypt_existing))

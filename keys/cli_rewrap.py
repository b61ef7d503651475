"""`phi-keys rewrap`: re-encrypt tokens under each practice's current key.

In a file or stream (`--in`/`--out`) or a live table (`--dsn`). `--out FILE` is written beside
its target and moved into place only when complete, so a failed run never leaves it half done.
The report goes to stderr when the data goes to stdout, so the two never mix.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from keys._file_ops import atomic_writer
from keys.canary_follow import CanaryFollower
from keys.canary_register import CanaryRegister, canaries_path
from keys.cli_migrate_counts import (
    EXIT_LEFT_BEHIND,
    census_lines,
    open_counted_keyring,
    save_counts,
)
from keys.cli_migrate_table import check_unresolved, note_counts, run_table_command
from keys.errors import ConfigError, KeyringError
from keys.keyring import KeyState
from keys.migrate import rewrap_row
from keys.rewrap import TokenRewrapper, counting_only, rewrite_stream

if TYPE_CHECKING:
    import argparse
    from collections.abc import Iterator

    from keys.keyring import Keyring
    from keys.rewrap import TokenCensus
    from keys.settings import KeySettings

__all__ = ["run_rewrap"]


def current_keys_digest(keyring: Keyring) -> str:
    """A short digest of every practice's active key id.

    Part of a table rewrap's job name: rows done before a rotation are under a key that is no
    longer current, so a run after another rotation must start over, not resume past them.
    """
    active = sorted(info.kid for info in keyring.infos() if info.state is KeyState.ACTIVE)
    return hashlib.sha256(",".join(active).encode()).hexdigest()[:12]


def run_rewrap(args: argparse.Namespace, settings: KeySettings) -> int:
    """Rewrap a file or a table; 1 when tokens that could not be opened keep their old key."""
    keyring, counter = open_counted_keyring(settings)
    canaries = CanaryFollower(CanaryRegister(canaries_path(settings)), keyring)
    if args.input is not None:
        if args.dsn:
            raise ConfigError("rewrap: use either --in/--out (a file) or --dsn (a table)")
        census = _rewrap_file(
            args, TokenRewrapper(keyring, on_rewrapped=canaries.rewrapped), canaries
        )
        save_counts(counter)
        if not args.dry_run:
            note_counts(args, values_written=census.changed)
    else:
        result = run_table_command(
            args,
            "rewrap",
            counter=counter,
            step=rewrap_row(keyring, canaries.rewrapped),
            job_state=current_keys_digest(keyring),
            before_commit=canaries.flush,
        )
        save_counts(counter)
        if not args.dry_run:
            note_counts(args, left_unresolved=sum(result.unresolved.values()))
        check_unresolved("rewrap", result, dry_run=args.dry_run)
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
    if canaries.followed:
        print(
            f"canary register: {canaries.followed} rewrapped canary tokens registered beside "
            "their old ones (the tripwire stays armed)",
            file=report,
        )
    if not args.dry_run:
        note_counts(args, left_on_old_key=sum(census.unopenable.values()))
    if census.unopenable and not args.dry_run:
        print(
            f"phi-keys: {sum(census.unopenable.values())} tokens could not be rewrapped and "
            "still use their old key: do not retire those keys yet",
            file=sys.stderr,
        )
        return EXIT_LEFT_BEHIND
    return 0


def _rewrap_file(
    args: argparse.Namespace, rewrapper: TokenRewrapper, canaries: CanaryFollower
) -> TokenCensus:
    """Rewrap --in into --out; rewrapped canary tokens are registered before --out appears."""
    out = args.output
    if args.dry_run:
        with _reader(args.input) as source:
            rewrite_stream(source, None, counting_only(rewrapper.census))
        return rewrapper.census
    if out is None:
        raise ConfigError("rewrap --in needs --out FILE or --out - (stdout), or --dry-run")
    if out != "-" and args.input != "-" and Path(out).resolve() == Path(args.input).resolve():
        raise ConfigError("rewrap: --out must differ from --in (the result replaces nothing)")
    if out == "-":
        with _reader(args.input) as source:
            rewrite_stream(source, sys.stdout.buffer, rewrapper)
        canaries.flush()
        sys.stdout.buffer.flush()
        return rewrapper.census
    with _reader(args.input) as source, _writer(Path(out)) as sink:
        rewrite_stream(source, sink, rewrapper)
        canaries.flush()  # before the atomic writer moves --out into place
    return rewrapper.census


@contextlib.contextmanager
def _writer(out: Path) -> Iterator[BinaryIO]:
    """A private (0600, new, never a symlink) temp file that replaces `out` only when complete."""
    try:
        with atomic_writer(out) as sink:
            yield sink
    except OSError as exc:
        raise KeyringError(
            f"{out}: cannot write ({exc.strerror}); nothing was replaced, the file is as it was"
        ) from None


def _reader(name: str) -> BinaryIO:
    if name == "-":
        return os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    try:
        return Path(name).open("rb")
    except OSError as exc:
        raise KeyringError(f"{name}: cannot read ({exc.strerror})") from None

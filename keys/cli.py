"""`phi-keys`: create the keystore, add practices, rotate keys, list them, encrypt one value.

Every command reads the `keys:` section of the config (`-c FILE` before or after the command,
or PHI_PROXY_CONFIG). Errors are one clear line on stderr saying what happened and what to do;
exit status 2 means a usage or config problem, 1 an operational failure (keystore, KEK, key
state). Key material is never printed. The commands and options are in keys.cli_arguments; a
command's code is imported only when it runs, so `--help` answers at once.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING

from keys.broken_pipe import finish_despite_closed_output, quiet_on_broken_pipe
from keys.cli_arguments import build_parser
from keys.errors import ConfigError, PhiProxyError

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["build_parser", "main"]

_PROG = "phi-keys"
_EXIT_OPERATIONAL = 1
_EXIT_USAGE = 2


def _exit_status(exc: PhiProxyError) -> int:
    print(f"{_PROG}: {exc}", file=sys.stderr)
    return _EXIT_USAGE if isinstance(exc, ConfigError) else _EXIT_OPERATIONAL


def _run(args: argparse.Namespace, *, changes_keys: bool) -> int:
    """Run the command; audit it when it succeeded, or when it committed anything and failed.

    A table run commits batch by batch, so a run that exits 1 (a practice without a key,
    tokens left behind) or stops on an error has still changed stored data: the trail must
    say so. An audit failure after a handler error is reported too (both lines, exit 1).
    """
    from keys.cli_audit import audit_key_change, committed  # noqa: PLC0415 - after parsing

    try:
        status = args.handler(args)
    except PhiProxyError as exc:
        status = _exit_status(exc)
    except BaseException:  # interrupted, or a bug: audit what was committed, then propagate
        if changes_keys and committed(args):
            try:
                audit_key_change(args, status=None)
            except PhiProxyError as audit_exc:
                print(f"{_PROG}: {audit_exc}", file=sys.stderr)
        raise
    if getattr(args, "dry_run", False):  # counted only, nothing written: not a key change
        return int(status)
    if changes_keys and (status == 0 or committed(args)):
        try:
            audit_key_change(args, status=status)
        except PhiProxyError as exc:
            failed = _exit_status(exc)
            return failed if status == 0 else _EXIT_OPERATIONAL
    return int(status)


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Run `phi-keys`; returns the exit status (argparse exits 2 itself on bad usage)."""
    args = build_parser().parse_args(argv)
    from keys.cli_audit import READ_ONLY_COMMANDS  # noqa: PLC0415 - after parsing (see above)

    read_only = args.command in READ_ONLY_COMMANDS
    if args.command == "canary":
        from keys.cli_canary import canary_is_read_only  # noqa: PLC0415

        read_only = canary_is_read_only(args)
    changes_keys = not read_only
    with finish_despite_closed_output() if changes_keys else contextlib.nullcontext():
        return _run(args, changes_keys=changes_keys)

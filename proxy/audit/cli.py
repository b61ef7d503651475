"""`phi-audit`: verify the trail, and list who saw which records (the breach-notification list).

Exit status: 0 the trail verifies (and the report was printed), 1 the trail is broken or cannot
be read — the report is still printed, marked unverified — 2 a usage or configuration problem.

With `audit.sink: postgres` (and no FILE arguments) the fleet's chain is read from the database
in one consistent snapshot, written to a scratch JSON-lines file and checked by the very code
that checks file trails; the head row the writers keep in `audit_head` then shows whether the
newest events were deleted. Only argument parsing is imported up front, so `--help` and usage
errors answer at once.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from keys.broken_pipe import quiet_on_broken_pipe
from keys.cli_options import add_config_option, add_version_option
from keys.errors import ConfigError, PhiProxyError
from proxy.audit.events import parse_time

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from proxy.audit.report import Disclosures, ReportFilter
    from proxy.audit.settings import AuditSettings
    from proxy.audit.trail_report import CheckedTrail


__all__ = ["build_parser", "main"]

_PROG = "phi-audit"


def _when(text: str) -> datetime:
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or time; use e.g. 2026-03-01 or 2026-03-01T14:00Z"
        ) from None


def _seq(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a sequence number (1, 2, 3, …)")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for `phi-audit` (exposed for docs and tests)."""
    what = "; names the trail and its key"
    parser = argparse.ArgumentParser(
        prog=_PROG, description="Verify phi-proxy's audit trail and report who saw what."
    )
    add_config_option(parser, subcommand=False, what=what)
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config_option(p, subcommand=True, what=what)
        p.add_argument(
            "files",
            nargs="*",
            type=Path,
            metavar="FILE",
            help="audit files, oldest first (default: audit.path and its rotated siblings)",
        )
        p.add_argument(
            "--pruned-before",
            type=_seq,
            metavar="N",
            help="the older files were pruned on purpose (retention): the trail now starts at "
            "seq N. Without it, a configured trail that does not start at seq 1 is broken",
        )
        return p

    p = command("verify", "check that no event was edited, deleted or reordered")
    p.add_argument(
        "--public-key",
        type=Path,
        metavar="PEM",
        help="check signed checkpoints with this Ed25519 public key; without the config, "
        "only links and signatures are checked (no audit key needed)",
    )
    p = command("report", "who saw which records' which field classes, when, how often")
    p.add_argument("--subject", help="only this subject (as logged: issuer|sub)")
    p.add_argument("--practice", help="only records of this practice")
    p.add_argument("--record", help="only this record id")
    p.add_argument("--since", type=_when, help="from this time (UTC unless a zone is given)")
    p.add_argument("--until", type=_when, help="before this time")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument(
        "--canaries",
        action="store_true",
        help="list every touch of a canary patient instead (who, when, practice, field class, "
        "disclosed / masked / sent, request id; docs/canaries.md)",
    )
    return parser


def _report_filter(args: argparse.Namespace) -> ReportFilter:
    from proxy.audit.report import ReportFilter  # noqa: PLC0415 - see the module docstring

    return ReportFilter(args.subject, args.practice, args.record, args.since, args.until)


def _collect(args: argparse.Namespace) -> Callable[[], Disclosures] | None:
    """For `report` (not `--canaries`): totals gathered in the verifying pass, per segment."""
    if args.command != "report" or args.canaries:
        return None
    from proxy.audit.report import Disclosures  # noqa: PLC0415 - see the module docstring

    return partial(Disclosures, _report_filter(args))


def _verify(args: argparse.Namespace, scratch: Path) -> CheckedTrail:
    from keys.config_file import load_section, resolve_config_path  # noqa: PLC0415 - see above
    from proxy.audit.factory import audit_key  # noqa: PLC0415
    from proxy.audit.parallel import auto_workers  # noqa: PLC0415
    from proxy.audit.secrets import load_public_key  # noqa: PLC0415
    from proxy.audit.settings import AuditSettings  # noqa: PLC0415
    from proxy.audit.trail_report import CheckedTrail, verify_configured_trail  # noqa: PLC0415
    from proxy.audit.verify import verify_files  # noqa: PLC0415

    public_key = load_public_key(args.public_key) if getattr(args, "public_key", None) else None
    configured = args.config or (None if public_key and args.files else "env")
    settings: AuditSettings | None = None
    if configured is not None:
        settings = load_section(resolve_config_path(args.config), "audit", AuditSettings)
    key = audit_key(settings) if settings is not None else None
    if not args.files:
        if settings is None:  # pragma: no cover - argparse flow guarantees a config here
            raise ConfigError("name the audit files, or pass -c FILE")
        return verify_configured_trail(
            settings,
            scratch,
            key=key,
            public_key=public_key,
            pruned_before=args.pruned_before,
            workers=auto_workers(),
            collect=_collect(args),
        )
    files = list(args.files)
    result = verify_files(
        files,
        key=key,
        public_key=public_key,
        head_of=None,
        whole_trail=False,
        pruned_before=_pruned_before(args, settings),
        workers=auto_workers(),
        collect=_collect(args),
    )
    return CheckedTrail(result, files)


def _pruned_before(args: argparse.Namespace, settings: AuditSettings | None) -> int | None:
    """--pruned-before, else audit.pruned_before from the config (retention recorded there)."""
    if args.pruned_before is not None:
        return int(args.pruned_before)
    return settings.pruned_before if settings is not None else None


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="phi-audit-") as scratch:
        return _run_in(args, Path(scratch))


def _run_in(args: argparse.Namespace, scratch: Path) -> int:
    from proxy.audit.canary_report import build_canary_report, render_canary_report  # noqa: PLC0415
    from proxy.audit.report import merged_report, render_report  # noqa: PLC0415
    from proxy.audit.verify import iter_events  # noqa: PLC0415

    checked = _verify(args, scratch)
    result, files = checked.result, checked.files
    for note in result.notes:
        print(f"{_PROG}: note: {note}", file=sys.stderr)
    if args.command == "verify":
        if result.problem is not None:
            evidence = (
                "keep these files untouched"
                if checked.database is None
                else "keep the database untouched (pg_dump the schema)"
            )
            print(f"{_PROG}: BROKEN: {checked.where(result.problem)}", file=sys.stderr)
            print(
                f"{_PROG}: the trail cannot be trusted from that line on; {evidence} as "
                "evidence and investigate who could write it",
                file=sys.stderr,
            )
            return 1
        print(
            f"OK: {result.events} events (seq {result.first_seq}..{result.last_seq}) in "
            f"{checked.location()}, {result.checkpoints} checkpoint(s), "
            f"{result.signatures_checked} signature(s) checked"
        )
        return 0
    where = _report_filter(args)
    if args.canaries:
        events = (event for _, _, event in iter_events(files))
        print(render_canary_report(build_canary_report(events, where), args.format))
    else:  # gathered by the verification, in the same pass over the trail
        print(render_report(merged_report(result.collected, where), args.format))
    if result.problem is not None:
        print(
            f"{_PROG}: WARNING: the trail does not verify ({checked.where(result.problem)}); the "
            "report above may be incomplete or altered",
            file=sys.stderr,
        )
        return 1
    return 0


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Run `phi-audit`; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 2
    except PhiProxyError as exc:
        print(f"{_PROG}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # our stdout's reader left: quiet_on_broken_pipe ends the command
    except OSError as exc:
        print(f"{_PROG}: cannot read the trail ({exc.__class__.__name__}: {exc})", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

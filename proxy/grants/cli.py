"""`phi-grants`: add, revoke, offboard, list and review who may read which practice's PHI.

Every change records who made it (`--by`, default the invoking user) and why (`--reason`).
Exit status: 0 done, 1 the store refused or nothing matched, 2 bad arguments or config.
`review` only reads: 0 no finding, 1 findings (or the store cannot be read), 2 bad arguments
or config — so a cron job can page on 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from keys.broken_pipe import finish_despite_closed_output, quiet_on_broken_pipe
from keys.config_file import load_section, resolve_config_path
from keys.errors import ConfigError, PhiProxyError
from proxy.grants.durations import format_duration, parse_duration
from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable
from proxy.grants.review import build_review
from proxy.grants.review_model import ReviewOptions
from proxy.grants.review_render import render_json, render_text
from proxy.grants.settings import GrantSettings
from proxy.grants.store import GrantRequest, open_grant_store
from proxy.grants.usage import Usage, read_usage
from proxy.identity.subject import Subject
from proxy.postgres_url import describe_postgres_url

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore

__all__ = ["main"]


class UsageError(Exception):
    """Bad arguments: exit 2 with one clear line."""


def _subject(text: str) -> Subject:
    try:
        return Subject.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> Any:  # noqa: ANN401 - argparse type callback
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _utc_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO time; write e.g. 2025-03-01T08:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone; add Z for UTC")
    return moment.astimezone(UTC)


def _fields(text: str) -> frozenset[str]:
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError("--fields is empty; omit it to grant every field class")
    return names


def _default_by() -> str | None:
    who = os.environ.get("SUDO_USER") or os.environ.get("USER")
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


_REVIEW_EPILOG = """\
findings (each printed with what it means and the command to fix it):
  expires_soon         ends within --expiring-within: renew it, or let it lapse
  long_lived           lifetime >= 90% of grants.max_ttl: confirm it is still needed
  longer_than_max_ttl  lasts longer than today's grants.max_ttl (made before it was lowered)
  never_used           no disclosure through it since it took effect (>= --unused-for ago)
  unused               no disclosure through it in the last --unused-for
  several_practices    the person holds grants at more than one practice
  used_after_lapse     someone kept asking for a practice's PHI after their grant ended
  usage_unknown        no readable audit trail: last use is unknown, not guessed
  audit_unverified     the audit trail does not verify; last use may be incomplete

last use = the newest audited request that disclosed PHI through the grant, read from the
audit trail the config names (file or PostgreSQL) and verified as phi-audit does.

exit status: 0 no finding, 1 findings (or the grant store cannot be read), 2 bad arguments
or config. Example cron line: phi-grants -c /etc/phi-proxy/config.yaml review || mail ...
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phi-grants",
        description="Manage who may read which practice's PHI. Every grant expires.",
    )
    parser.add_argument("-c", "--config", help="config file (default: $PHI_PROXY_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True)

    def who(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--reason", required=True, help="why (kept in the grant history)")
        sub.add_argument("--by", help="who is making the change (default: $SUDO_USER or $USER)")

    add = commands.add_parser("add", help="grant a person access to one practice's PHI")
    add.add_argument("--subject", required=True, type=_subject, help="ISSUER|SUB of the person")
    add.add_argument("--practice", required=True, help="practice id")
    add.add_argument("--fields", type=_fields, help="field classes, e.g. ssn,history (default all)")
    add.add_argument("--ttl", required=True, type=_duration, help="lifetime, e.g. 30d, 12h")
    add.add_argument("--not-before", type=_utc_time, help="start time, ISO 8601 (default now)")
    who(add)

    revoke = commands.add_parser(
        "revoke", help="revoke one grant, or a person's grants at a practice"
    )
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", dest="grant_id", help="grant id (see: phi-grants list)")
    target.add_argument("--subject", type=_subject, help="ISSUER|SUB (needs --practice)")
    revoke.add_argument("--practice", help="practice id (with --subject)")
    who(revoke)

    offboard = commands.add_parser("offboard", help="revoke every grant a person holds")
    offboard.add_argument("--subject", required=True, type=_subject, help="ISSUER|SUB")
    offboard.add_argument("--reason", default="offboarded", help="why (default: offboarded)")
    offboard.add_argument("--by", help="who is making the change (default: $SUDO_USER or $USER)")

    show = commands.add_parser("list", help="list grants")
    show.add_argument("--practice", help="only this practice")
    show.add_argument("--subject", type=_subject, help="only this person (ISSUER|SUB)")
    when = show.add_mutually_exclusive_group()
    when.add_argument("--active", action="store_true", help="only grants active now")
    when.add_argument(
        "--expiring", type=_duration, help="only active grants expiring within, e.g. 7d"
    )
    show.add_argument("--json", action="store_true", help="one JSON document, for scripts")

    review = commands.add_parser(
        "review",
        help="periodic access review: every grant in effect, with findings (read-only)",
        description="List every grant in effect (active or scheduled), per practice, with its\n"
        "last use from the audit trail and findings to act on. Changes nothing.",
        epilog=_REVIEW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    review.add_argument(
        "-c", "--config", default=argparse.SUPPRESS, help="config file (default: $PHI_PROXY_CONFIG)"
    )
    review.add_argument("--practice", help="only grants of this practice")
    review.add_argument(
        "--expiring-within",
        type=_duration,
        default=parse_duration("14d"),
        metavar="DURATION",
        help="flag grants that end within this time (default 14d)",
    )
    review.add_argument(
        "--unused-for",
        type=_duration,
        default=parse_duration("30d"),
        metavar="DURATION",
        help="flag grants with no disclosure in this time (default 30d)",
    )
    review.add_argument(
        "--skip-usage",
        action="store_true",
        help="do not read the audit trail (you review last use elsewhere); last use is then "
        "'not checked' instead of a finding",
    )
    review.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    return parser


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_dict(grant: Grant) -> dict[str, Any]:
    return {
        "id": grant.id,
        "subject": str(grant.subject),
        "practice": grant.practice,
        "fields": None if grant.field_classes is None else sorted(grant.field_classes),
        "not_before": _time(grant.not_before),
        "expires_at": _time(grant.expires_at),
        "created_at": _time(grant.created_at),
        "created_by": grant.created_by,
        "reason": grant.reason,
        "revoked_at": _time(grant.revoked_at),
        "revoked_by": grant.revoked_by,
        "revoke_reason": grant.revoke_reason,
    }


def _line(grant: Grant, now: datetime) -> str:
    fields = "all fields" if grant.field_classes is None else ",".join(sorted(grant.field_classes))
    if grant.revoked_at is not None:
        state = f"revoked {_time(grant.revoked_at)} by {grant.revoked_by}"
    elif grant.expires_at <= now:
        state = f"expired {_time(grant.expires_at)}"
    elif grant.not_before > now:
        state = f"starts {_time(grant.not_before)}, expires {_time(grant.expires_at)}"
    else:
        left = format_duration(grant.expires_at - now)
        state = f"active until {_time(grant.expires_at)} ({left} left)"
    return f"{grant.id}  {grant.subject}  {grant.practice}  [{fields}]  {state}"


def _audit(config_path: Path, action: str, by: str, grants: list[Grant], now: datetime) -> None:
    """Record the change in the audit trail (ids and names only, never the free-text reason)."""
    from proxy.audit.factory import record_change  # noqa: PLC0415 - only for changes

    if not grants:
        return
    record_change(
        config_path,
        "grant_change",
        action,
        actor=by,
        now=now,
        details={
            "grants": [
                {
                    "id": g.id,
                    "subject": str(g.subject),
                    "practice": g.practice,
                    "field_classes": None if g.field_classes is None else sorted(g.field_classes),
                    "not_before": _time(g.not_before),
                    "expires_at": _time(g.expires_at),
                }
                for g in grants
            ]
        },
    )


async def _review(
    args: argparse.Namespace,
    store: GrantStore,
    settings: GrantSettings,
    now: datetime,
    config_path: Path,
) -> int:
    """Print the access review; 1 when it has findings. Reads grants and the trail only."""
    grants = await store.list()  # all practices: several_practices looks at every one
    usage = (
        Usage("not_checked")
        if args.skip_usage
        else await asyncio.to_thread(read_usage, config_path, now=now)
    )
    store_name = (
        f"{describe_postgres_url(settings.store)} (schema {settings.pg_schema})"
        if settings.is_postgres
        else str(settings.sqlite_path)
    )
    options = ReviewOptions(
        now=now,
        max_ttl=settings.max_ttl,
        expiring_within=args.expiring_within,
        unused_for=args.unused_for,
        practice=args.practice,
        config=args.config,
        store=store_name,
    )
    review = build_review(grants, usage, options)
    print(render_json(review) if args.json else render_text(review))
    return 1 if review.finding_count else 0


async def _execute(
    args: argparse.Namespace, store: GrantStore, now: datetime, config_path: Path
) -> int:
    if args.command == "list":
        active_at = now if (args.active or args.expiring) else None
        grants = await store.list(
            practice=args.practice,
            subject=args.subject,
            active_at=active_at,
            expiring_within=args.expiring,
        )
        if args.json:
            print(json.dumps([_as_dict(g) for g in grants], indent=2))
        else:
            for grant in grants:
                print(_line(grant, now))
            print(f"{len(grants)} grant(s)")
        return 0
    by = args.by or _default_by()
    if not by:
        raise UsageError("cannot tell who you are: pass --by NAME")
    if args.command == "add":
        start = args.not_before or now
        request = GrantRequest(
            subject=args.subject,
            practice=args.practice,
            field_classes=args.fields,
            expires_at=start + args.ttl,
            not_before=args.not_before,
            created_by=by,
            reason=args.reason,
        )
        grant = await store.add(request, now=now)
        print(f"added {_line(grant, now)}")
        _audit(config_path, "add", by, [grant], now)
        return 0
    if args.command == "revoke":
        if args.subject is not None and not args.practice:
            raise UsageError("revoke --subject needs --practice (or use: phi-grants offboard)")
        revoked = await store.revoke(
            grant_id=args.grant_id,
            subject=args.subject,
            practice=args.practice,
            by=by,
            reason=args.reason,
            now=now,
        )
    else:
        revoked = await store.offboard(args.subject, by=by, reason=args.reason, now=now)
        if not revoked:
            print(f"{args.subject} held no unexpired grant; nothing to revoke")
    for grant in revoked:
        print(f"revoked {_line(grant, now)}")
    _audit(config_path, args.command, by, revoked, now)
    return 0


async def _run(args: argparse.Namespace) -> int:
    config_path = resolve_config_path(args.config)
    settings = load_section(config_path, "grants", GrantSettings)
    if args.command == "review" and not settings.is_postgres and not settings.sqlite_path.exists():
        raise ConfigError(  # opening the store would create an empty one: a review never writes
            f"{settings.sqlite_path}: no grant database there (grants.store in {config_path}); "
            "check the config, or run the review on the host that holds the grants"
        )
    store = open_grant_store(settings)
    try:
        now = datetime.now(UTC)
        if args.command == "review":
            return await _review(args, store, settings, now, config_path)
        return await _execute(args, store, now, config_path)
    finally:
        await store.close()


#: Commands that change grants: they finish (and audit) even if the output's reader has left.
_CHANGING_COMMANDS = frozenset({"add", "revoke", "offboard"})


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Run `phi-grants`; return the exit status."""
    args = _parser().parse_args(argv)
    changes_grants = args.command in _CHANGING_COMMANDS
    try:
        with finish_despite_closed_output() if changes_grants else contextlib.nullcontext():
            return asyncio.run(_run(args))
    except (UsageError, ConfigError) as exc:
        print(f"phi-grants: {exc}", file=sys.stderr)
        return 2
    except GrantNotFound as exc:
        print(f"phi-grants: {exc}", file=sys.stderr)
        return 1
    except GrantError as exc:
        print(f"phi-grants: refused: {exc}", file=sys.stderr)
        return 2
    except (GrantStoreUnavailable, PhiProxyError) as exc:
        print(f"phi-grants: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `phi-grants` command line: its commands, options and help, and the checks on each value.

A bad subject, duration, time or field list is refused here, before anything opens the store.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from keys.cli_options import add_config_option, add_version_option
from proxy.grants.durations import parse_duration
from proxy.identity.subject import Subject

__all__ = ["UsageError", "build_parser"]


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
  break_glass_unacknowledged  an emergency (break-glass) use older than
                       break_glass.signoff_within that no officer signed off

break-glass uses awaiting sign-off are listed after the grants; sign one off with
  phi-grants review --acknowledge bg_ID --by WHO --note TEXT

last use = the newest audited request that disclosed PHI through the grant, read from the
audit trail the config names (file or PostgreSQL) and verified as phi-audit does.

exit status: 0 no finding, 1 findings (or the grant store cannot be read), 2 bad arguments
or config. Example cron line: phi-grants -c /etc/phi-proxy/config.yaml review || mail ...
"""


def build_parser() -> argparse.ArgumentParser:
    """Every command and option of `phi-grants`, as its --help shows them."""
    parser = argparse.ArgumentParser(
        prog="phi-grants",
        description="Manage who may read which practice's PHI. Every grant expires.",
    )
    add_config_option(parser, subcommand=False)
    add_version_option(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:  # noqa: ANN401
        """A command that takes -c FILE after its name too (`phi-grants list -c FILE`)."""
        sub = commands.add_parser(name, **kwargs)
        add_config_option(sub, subcommand=True)
        return sub

    def who(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--reason", required=True, help="why (kept in the grant history)")
        sub.add_argument("--by", help="who is making the change (default: $SUDO_USER or $USER)")

    add = command("add", help="grant a person access to one practice's PHI")
    add.add_argument("--subject", required=True, type=_subject, help="ISSUER|SUB of the person")
    add.add_argument("--practice", required=True, help="practice id")
    add.add_argument("--fields", type=_fields, help="field classes, e.g. ssn,history (default all)")
    add.add_argument("--ttl", required=True, type=_duration, help="lifetime, e.g. 30d, 12h")
    add.add_argument("--not-before", type=_utc_time, help="start time, ISO 8601 (default now)")
    add.add_argument(
        "--no-key-yet",
        action="store_true",
        help="add it although the practice has no key in the keystore yet (its key is created "
        "later with phi-keys add-practice); without it such a grant is refused, because a "
        "practice id with no key is usually a typo",
    )
    who(add)

    revoke = command("revoke", help="revoke one grant, or a person's grants at a practice")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("--id", dest="grant_id", help="grant id (see: phi-grants list)")
    target.add_argument("--subject", type=_subject, help="ISSUER|SUB (needs --practice)")
    revoke.add_argument("--practice", help="practice id (with --subject)")
    who(revoke)

    offboard = command("offboard", help="revoke every grant a person holds")
    offboard.add_argument("--subject", required=True, type=_subject, help="ISSUER|SUB")
    offboard.add_argument("--reason", default="offboarded", help="why (default: offboarded)")
    offboard.add_argument("--by", help="who is making the change (default: $SUDO_USER or $USER)")

    show = command("list", help="list grants")
    show.add_argument("--practice", help="only this practice")
    show.add_argument("--subject", type=_subject, help="only this person (ISSUER|SUB)")
    when = show.add_mutually_exclusive_group()
    when.add_argument("--active", action="store_true", help="only grants active now")
    when.add_argument(
        "--expiring", type=_duration, help="only active grants expiring within, e.g. 7d"
    )
    show.add_argument("--json", action="store_true", help="one JSON document, for scripts")

    review = command(
        "review",
        help="periodic access review: every grant in effect, with findings (read-only)",
        description="List every grant in effect (active or scheduled), per practice, with its\n"
        "last use from the audit trail and findings to act on. Changes nothing.",
        epilog=_REVIEW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    signoff = review.add_argument_group(
        "break-glass sign-off",
        "Sign off one emergency (break-glass) use after checking it; final and audited.",
    )
    signoff.add_argument(
        "--acknowledge",
        metavar="ID",
        help="the break-glass use to sign off (its bg_... id, as the review lists it)",
    )
    signoff.add_argument(
        "--by", help="the security officer signing off (default: $SUDO_USER or $USER)"
    )
    signoff.add_argument("--note", help="what you checked and concluded (required)")
    return parser

"""`phi-grants`: add, revoke, offboard, list and review who may read which practice's PHI.

Every change records who made it (`--by`, default the invoking user) and why (`--reason`).
Exit status: 0 done, 1 the store refused or nothing matched, 2 bad arguments or config.
`review` only reads: 0 no finding, 1 findings (or the store cannot be read), 2 bad arguments
or config — so a cron job can page on 1. `review --acknowledge ID` signs off one break-glass
use: 0 done, 1 no such use (or already signed off), 2 not a break-glass use or bad arguments.
Only `add` creates a missing store (and says so); the others exit 2, so a mistyped path or
schema is not an empty, healthy-looking store. `add` refuses a practice without a key in the
keystore unless `--no-key-yet` (practice_key).

Only argument parsing is imported up front; the stores, settings and audit code load once the
arguments are good, so `--help` and a usage error answer at once (no aiohttp, cryptography).
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from keys.broken_pipe import finish_despite_closed_output, quiet_on_broken_pipe
from keys.errors import ConfigError, PhiProxyError
from proxy.grants.cli_arguments import UsageError, build_parser
from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

__all__ = ["main"]


async def _run(args: argparse.Namespace) -> int:
    # The arguments are good: now load what the command needs.
    from keys.config_file import load_section, resolve_config_path  # noqa: PLC0415
    from proxy.grants.cli_changes import change_grants  # noqa: PLC0415
    from proxy.grants.cli_listing import list_grants  # noqa: PLC0415
    from proxy.grants.cli_review import check_signoff_arguments, review_grants  # noqa: PLC0415
    from proxy.grants.presence import (  # noqa: PLC0415
        describe_grant_store,
        grant_store_exists,
        require_grant_store,
    )
    from proxy.grants.settings import GrantSettings  # noqa: PLC0415
    from proxy.grants.store import open_grant_store  # noqa: PLC0415

    config_path = resolve_config_path(args.config)
    if args.command == "review" and args.acknowledge is not None:
        check_signoff_arguments(args)
    settings = load_section(config_path, "grants", GrantSettings)
    note = None
    if args.command == "add":  # before the store is opened: a refused grant creates nothing
        from proxy.grants.practice_key import check_practice_key  # noqa: PLC0415

        note = check_practice_key(config_path, args.practice, no_key_yet=args.no_key_yet)
    creating = args.command == "add" and not await grant_store_exists(settings)
    if args.command != "add":
        await require_grant_store(settings, config_path)
    store = open_grant_store(settings)
    try:
        now = datetime.now(UTC)
        if args.command == "review":
            return await review_grants(args, store, settings, now, config_path)
        if args.command == "list":
            return await list_grants(args, store, now)
        status = await change_grants(args, store, now, config_path)
        if note is not None:
            print(f"phi-grants: {note}", file=sys.stderr)
        if creating:
            print(
                f"phi-grants: created a new grant store at {describe_grant_store(settings)} "
                f"(grants.store in {config_path}); if the proxy reads another, fix the config",
                file=sys.stderr,
            )
        return status
    finally:
        await store.close()


#: Commands that change grants: they finish (and audit) even if the output's reader has left.
_CHANGING_COMMANDS = frozenset({"add", "revoke", "offboard"})


@quiet_on_broken_pipe
def main(argv: Sequence[str] | None = None) -> int:
    """Run `phi-grants`; return the exit status."""
    args = build_parser().parse_args(argv)
    import asyncio  # noqa: PLC0415 - after parsing: --help and usage errors answer at once

    changes_grants = args.command in _CHANGING_COMMANDS or (
        args.command == "review" and args.acknowledge is not None
    )
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

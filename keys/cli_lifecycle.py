"""`phi-keys retire`, `shred` (and `rotate-kek`, from keys.cli_kek), and `phi-keys list`'s usage.

These are the irreversible or hard-to-reverse steps of a key's life, so each one checks before
it acts: `retire` scans the data for tokens still using the key (or demands `--force` and a
written reason), `shred` demands the practice id typed twice, `rotate-kek` keeps a copy of the
previous file that the old KEK still opens.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from keys.cli_migrate_table import is_database_error
from keys.errors import ConfigError, KeyringError
from keys.keyring import KeyState
from keys.migrate import JobResult, run_table_job
from keys.rewrap import TokenCensus, count_tokens, counting_only, rewrite_stream
from keys.settings import keystore_file
from keys.table import TableSpec
from keys.table_backends import open_table
from keys.usage import WARN_FRACTION, read_usage, usage_path

if TYPE_CHECKING:
    import argparse

    from keys.keyring import KeyInfo
    from keys.settings import KeySettings
    from keys.table import Row, Update

__all__ = ["cmd_retire", "cmd_shred", "cmd_unretire", "usage_counts", "usage_warnings"]


def usage_counts(settings: KeySettings) -> dict[str, int] | None:
    """Encryptions per kid from the usage file; None (and a warning) if it is unreadable."""
    try:
        return read_usage(usage_path(settings))
    except KeyringError as exc:
        print(f"phi-keys: warning: {exc}", file=sys.stderr)
        return None


def usage_warnings(
    settings: KeySettings, infos: tuple[KeyInfo, ...], counts: dict[str, int]
) -> list[str]:
    """One line per encrypting key at or past WARN_FRACTION of keys.usage_limit."""
    limit = settings.usage_limit
    lines = []
    for info in infos:
        used = counts.get(info.kid, 0)
        if info.state is KeyState.ACTIVE and used >= WARN_FRACTION * limit:
            lines.append(
                f"warning: key {info.kid} of practice {info.practice} has encrypted {used} "
                f"values, {100 * used // limit}% of keys.usage_limit ({limit}); rotate it now: "
                f"`phi-keys rotate --practice {info.practice}`"
            )
    return lines


def _scan_table(args: argparse.Namespace, census: TokenCensus) -> None:
    columns = tuple(c.strip().partition(":")[0] for c in args.columns.split(","))
    spec = TableSpec(args.table, args.key_column, columns)

    def step(row: Row, result: JobResult) -> list[Update]:
        for value in row.values.values():
            if isinstance(value, str):
                count_tokens(value, result.census)
        return []

    table = open_table(args.dsn, spec)
    try:
        result = run_table_job(table, "scan", step, dry_run=True, batch_size=args.batch_size)
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise KeyringError(  # the type only: a driver's message can quote a stored value
            f"retire: cannot scan the table ({type(exc).__name__}); nothing was retired"
        ) from None
    finally:
        table.close()
    census.merge(result.census)


def cmd_retire(args: argparse.Namespace, settings: KeySettings) -> int:
    """`phi-keys retire`: stop a decrypt-only key, once no token uses it."""
    store = keystore_file(settings)
    info = next((i for i in store.infos() if i.kid == args.key), None)
    if info is None:
        raise KeyringError(f"no key with id {args.key} in {store.path}; see `phi-keys list`")
    if info.state is KeyState.RETIRED:
        print(f"key {info.kid} is already retired")
        return 0
    if info.state is KeyState.ACTIVE:
        raise KeyringError(
            f"key {info.kid} is the active key of practice {info.practice}: first `phi-keys "
            f"rotate --practice {info.practice}`, then `phi-keys rewrap` the stored data, "
            "then retire it"
        )
    if args.force:
        if not (args.reason or "").strip():
            raise ConfigError('retire --force needs --reason "…" saying why no scan was done')
        print(f"retiring key {info.kid} WITHOUT a scan; reason: {args.reason.strip()}")
    else:
        _prove_unused(args, info.kid)
    retired = store.set_state(info.kid, KeyState.RETIRED)
    print(
        f"retired key {retired.kid} (practice {retired.practice} v{retired.version}): it no "
        f"longer decrypts; undo with care, or destroy it for good later"
    )
    return 0


def _prove_unused(args: argparse.Namespace, kid: str) -> None:
    """Scan the named files/table; raise KeyringError if any token still uses `kid`."""
    if not args.scan and not args.dsn:
        raise ConfigError(
            "retire needs proof that no stored token uses the key: --scan FILE (a dump or "
            'export), or --dsn/--table/--columns (a live table), or --force --reason "…"'
        )
    census = TokenCensus()
    for name in args.scan or ():
        try:
            with open(name, "rb") as source:  # noqa: PTH123 - names come from the CLI
                rewrite_stream(source, None, counting_only(census))
        except OSError as exc:
            raise KeyringError(f"{name}: cannot read ({exc.strerror})") from None
    if args.dsn:
        if not args.table or not args.columns:
            raise ConfigError("retire --dsn needs --table and --columns to scan")
        _scan_table(args, census)
    still = census.before[kid]
    if still:
        raise KeyringError(
            f"{still} tokens still use key {kid}; rewrap them first (`phi-keys rewrap`), then "
            "scan again. Nothing was changed."
        )
    print(f"scan found no token under key {kid} ({sum(census.before.values())} tokens scanned)")


def cmd_unretire(args: argparse.Namespace, settings: KeySettings) -> int:
    """`phi-keys unretire`: let a retired key decrypt again."""
    info = keystore_file(settings).set_state(args.key, KeyState.DECRYPT_ONLY)
    print(f"key {info.kid} (practice {info.practice} v{info.version}) decrypts again")
    return 0


def cmd_shred(args: argparse.Namespace, settings: KeySettings) -> int:
    """`phi-keys shred`: destroy every key of a practice."""
    if args.confirm != args.practice:
        raise ConfigError(
            f"to destroy every key of practice {args.practice} for good, repeat its id: "
            f"--confirm {args.practice}. Nothing was destroyed."
        )
    store = keystore_file(settings)
    destroyed = store.shred(args.practice)
    print(
        f"destroyed {len(destroyed)} keys of practice {args.practice}: its tokens can no longer "
        "be decrypted by anyone and now mask for every caller"
    )
    backups = sorted(store.path.parent.glob(store.path.name + ".bak-*"))
    print(
        "keystore backups made before now still hold these keys"
        + (f" (found here: {', '.join(str(b) for b in backups)})" if backups else "")
        + ": delete them, or run `phi-keys rotate-kek --generate` and destroy the old KEK, "
        "which makes every older backup unreadable"
    )
    return 0

"""`phi-keys encrypt-existing`: encrypt legacy plaintext PHI in a live table.

Values that already hold a token are left alone, so a re-run changes nothing twice. Rows of a
practice without a key stay plaintext and make the run end with status 1.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from keys.cli_migrate_counts import (
    EXIT_LEFT_BEHIND,
    census_lines,
    open_counted_keyring,
    save_counts,
)
from keys.cli_migrate_table import (
    check_unresolved,
    note_counts,
    run_table_command,
    split_columns,
)
from keys.config_file import load_section, resolve_config_path
from keys.errors import ConfigError
from keys.migrate import EncryptPlan, encrypt_row
from keys.token_format import is_field_class

if TYPE_CHECKING:
    import argparse
    from pathlib import Path

    from keys.settings import KeySettings

__all__ = ["run_encrypt_existing"]


def _plan(args: argparse.Namespace, config: Path) -> EncryptPlan:
    """Each column's field class (one fields.classes defines) and the deterministic classes."""
    columns = split_columns(args.columns or "")
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
    # The proxy's own model reads fields.classes, so `deterministic: yes` (or "true", 1) means
    # here exactly what it means to the proxy: migrated rows and new writes use the same cipher.
    from proxy.transform.settings import FieldSettings  # noqa: PLC0415 - keys need no proxy import

    configured = load_section(config, "fields", FieldSettings).classes
    deterministic = {c for c in (args.deterministic or "").split(",") if c}
    if configured:
        deterministic.update(name for name, spec in configured.items() if spec.deterministic)
        missing = sorted(set(classes.values()) - set(configured))
        if missing:
            raise ConfigError(
                f"encrypt-existing: field class {missing[0]} is not defined under "
                "fields.classes in the config, so the proxy would not know how to show it; "
                "add it there first"
            )
    return EncryptPlan(classes, frozenset(deterministic))


def run_encrypt_existing(args: argparse.Namespace, settings: KeySettings) -> int:
    """Encrypt a table's plaintext; 1 when values stay plaintext for want of a practice key."""
    if not args.practice_column:
        raise ConfigError("encrypt-existing needs --practice-column (the practice of each row)")
    plan = _plan(args, resolve_config_path(args.config))
    keyring, counter = open_counted_keyring(settings)
    step = encrypt_row(keyring, plan)
    result = run_table_command(
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
    if not args.dry_run:
        note_counts(args, left_plaintext=left, left_unresolved=sum(result.unresolved.values()))
    check_unresolved("encrypt-existing", result, dry_run=args.dry_run)  # exit 1 if any
    if left and not args.dry_run:
        print(
            f"phi-keys: {left} values are still plaintext because their practice has no key; "
            "add the practice (`phi-keys add-practice`) and run again with --restart",
            file=sys.stderr,
        )
        return EXIT_LEFT_BEHIND
    return 0

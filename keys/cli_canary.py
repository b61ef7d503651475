"""`phi-keys canary`: issue, list, show and remove canary patients (docs/canaries.md).

A canary is a made-up patient planted in the portal that no real workflow reads. Its tokens are
made by the proxy's own encryption path (the config's `fields.classes` decide which class is
deterministic), so a deterministic value written through the proxy is stored as exactly the
token printed here. The register keeps them sealed (keys.canary_register); the proxy raises a
`canary_touched` alert whenever one passes through it.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any, Final

from keys.canary_register import (
    CanaryEntry,
    CanaryRegister,
    CanaryRegisterError,
    canaries_path,
    new_canary_id,
    seal_field,
    unseal_field,
    utc_stamp,
)
from keys.cli_migrate_counts import save_counts
from keys.config_file import load_section, read_config_mapping, resolve_config_path
from keys.errors import ConfigError
from keys.settings import keystore_file
from keys.token_format import TOKEN_PREFIX, is_field_class
from keys.usage import open_counting_keyring, usage_counter

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

    from keys.settings import KeySettings

__all__ = ["canary_is_read_only", "parse_field_spec", "run_canary"]

_MAX_LABEL: Final = 200
_PLANT: Final = (
    "next: plant these values as ONE made-up patient in the portal, and keep every real "
    'workflow away from it (docs/canaries.md, "Plant a canary"); any read of it through the '
    "proxy raises a canary_touched alert"
)


def canary_is_read_only(args: argparse.Namespace) -> bool:
    """`--list` and `--show` change nothing (not audited as a key change)."""
    return args.command == "canary" and bool(args.list_canaries or args.show)


def parse_field_spec(spec: str) -> tuple[str, str | None]:
    """`CLASS` or `CLASS=VALUE` → (class, value or None); ConfigError naming the fix."""
    field_class, sep, value = spec.partition("=")
    if not is_field_class(field_class):
        raise ConfigError(
            f"--field {field_class!r}: not a field class name (1-32 of a-z, 0-9, _ starting "
            "with a letter, as under fields.classes in the config)"
        )
    return field_class, (value if sep else None)


def _deterministic_classes(args: argparse.Namespace) -> dict[str, bool]:
    """Each class under the config's `fields.classes` → whether the proxy encrypts it with SIV."""
    from proxy.transform.settings import FieldSettings  # noqa: PLC0415 - keys must not need proxy

    path = resolve_config_path(args.config)
    if not read_config_mapping(path).get("fields"):
        raise ConfigError(
            f"{path}: the config has no `fields:` section; canaries need the config "
            "`phi-proxy serve` reads, which says how each field class is encrypted"
        )
    fields = load_section(path, "fields", FieldSettings)
    return {name: cls.deterministic for name, cls in fields.classes.items()}


def _values(specs: Sequence[str], stdin_lines: Callable[[], list[str]]) -> dict[str, str]:
    """Class → value: `CLASS=VALUE` as given; bare `CLASS` values from stdin, one per line."""
    parsed = [parse_field_spec(spec) for spec in specs]
    classes = [c for c, _ in parsed]
    if len(set(classes)) != len(classes):
        raise ConfigError("--field: each class at most once (one canary = one patient)")
    bare = [c for c, v in parsed if v is None]
    lines = stdin_lines() if bare else []
    if len(lines) < len(bare):
        raise ConfigError(
            f"--field {' '.join(bare)}: expected {len(bare)} value(s) on stdin, one per line "
            f"in that order, got {len(lines)}; or give them as --field CLASS=VALUE"
        )
    from_stdin = dict(zip(bare, lines, strict=False))
    values = {c: (v if v is not None else from_stdin[c]) for c, v in parsed}
    for field_class, value in values.items():
        if not value.strip():
            raise ConfigError(f"--field {field_class}: the value is empty; nothing was issued")
        if TOKEN_PREFIX in value:
            raise ConfigError(
                f"--field {field_class}: give the made-up plaintext value, not a token; "
                "nothing was issued"
            )
    return values


def _stdin_lines() -> list[str]:
    try:
        text = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("the values on stdin are not UTF-8 text; nothing was issued") from None
    return text.splitlines()


def _issue(args: argparse.Namespace, settings: KeySettings) -> int:
    if not args.practice or not args.field:
        raise ConfigError(
            "canary: give --practice PRACTICE and at least one --field CLASS[=VALUE] to issue "
            "one (or --list, --show ID, --remove ID)"
        )
    if len(args.label) > _MAX_LABEL:
        raise ConfigError(f"--label: at most {_MAX_LABEL} characters")
    deterministic = _deterministic_classes(args)
    values = _values(args.field, _stdin_lines)
    unknown = sorted(set(values) - set(deterministic))
    if unknown:
        raise ConfigError(
            f"--field {', '.join(unknown)}: not defined under fields.classes in the config; "
            "the proxy would not treat it as PHI. Nothing was issued."
        )
    counter = usage_counter(settings)
    keyring = open_counting_keyring(settings, counter)
    tokens = {
        c: keyring.encrypt(args.practice, c, v, deterministic=deterministic[c])
        for c, v in values.items()
    }
    entry = CanaryEntry(
        canary_id=new_canary_id(),
        practice=args.practice,
        label=args.label,
        created_at=utc_stamp(),
        created_by=_actor(),
        fields=tuple(seal_field(keyring, args.practice, c, t) for c, t in tokens.items()),
    )
    register = CanaryRegister(canaries_path(settings))
    register.add(entry)
    save_counts(counter)
    args.canary_id, args.field_classes = entry.canary_id, sorted(tokens)
    label = f" ({entry.label})" if entry.label else ""
    print(f"issued canary {entry.canary_id} for practice {entry.practice}{label}")
    _print_tokens(tokens)
    print(
        f"registered in {register.path}; a running proxy picks it up within "
        "keys.watch_interval seconds (or on SIGHUP)"
    )
    print(_PLANT)
    return 0


def _print_tokens(tokens: dict[str, str]) -> None:
    width = max(len(c) for c in tokens)
    for field_class, token in tokens.items():
        print(f"  {field_class.ljust(width)}  {token}")


def _actor() -> str | None:
    import getpass  # noqa: PLC0415 - only when issuing

    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _list(args: argparse.Namespace, settings: KeySettings) -> int:
    entries = CanaryRegister(canaries_path(settings)).read()
    if args.json:
        print(json.dumps([_listed(e) for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no canaries in {canaries_path(settings)}")
        return 0
    rows = [("ID", "PRACTICE", "CLASSES", "CREATED", "BY", "LABEL")]
    rows += [
        (
            e.canary_id,
            e.practice,
            ",".join(e.classes),
            e.created_at,
            e.created_by or "-",
            e.label.encode("unicode_escape").decode("ascii"),  # a label cannot move the cursor
        )
        for e in entries
    ]
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print(f"{len(entries)} canary(ies)")
    return 0


def _listed(entry: CanaryEntry) -> dict[str, Any]:
    return {
        "id": entry.canary_id,
        "practice": entry.practice,
        "classes": list(entry.classes),
        "created_at": entry.created_at,
        "created_by": entry.created_by,
        "label": entry.label,
    }


def _find(settings: KeySettings, canary_id: str) -> CanaryEntry:
    for entry in CanaryRegister(canaries_path(settings)).read():
        if entry.canary_id == canary_id:
            return entry
    raise CanaryRegisterError(
        f"{canaries_path(settings)}: no canary {canary_id}; `phi-keys canary --list` shows the ids"
    )


def _show(args: argparse.Namespace, settings: KeySettings) -> int:
    entry = _find(settings, args.show)
    keyring = keystore_file(settings).load()
    tokens = {}
    for field in entry.fields:  # the newest token of each class (a rewrap appends one)
        with contextlib.suppress(CanaryRegisterError):  # under a retired key: the newer one opens
            tokens[field.field_class] = unseal_field(keyring, entry.practice, field)
    if not tokens:
        raise CanaryRegisterError(
            f"canary {entry.canary_id}: none of its tokens opens with this keystore "
            "(its practice shredded or its keys retired); remove it with --remove --force"
        )
    print(f"canary {entry.canary_id} for practice {entry.practice}")
    _print_tokens(tokens)
    return 0


def _remove(args: argparse.Namespace, settings: KeySettings) -> int:
    entry = _find(settings, args.remove)
    classes = ", ".join(entry.classes)
    what = f"canary {entry.canary_id} of practice {entry.practice} ({classes})"
    if not args.force:
        print(
            f"phi-keys: not removed: {what}. Once removed, reads of its tokens raise no alert "
            "and `--show` cannot print them again. Delete the made-up patient from the portal "
            "first, then run this again with --force.",
            file=sys.stderr,
        )
        return 1
    CanaryRegister(canaries_path(settings)).remove(entry.canary_id)
    args.canary_id, args.field_classes = entry.canary_id, list(entry.classes)
    print(f"removed {what}; reads of its tokens no longer raise alerts")
    return 0


def run_canary(args: argparse.Namespace, settings: KeySettings) -> int:
    """`phi-keys canary`: issue, --list, --show or --remove (keys.cli_arguments names it)."""
    if args.list_canaries:
        return _list(args, settings)
    if args.show:
        return _show(args, settings)
    if args.remove:
        return _remove(args, settings)
    return _issue(args, settings)

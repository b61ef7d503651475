"""`phi-keys` init, add-practice, rotate, list and encrypt: the everyday key commands.

Imported only when one of them runs (keys.cli_arguments names them), so `phi-keys --help`
loads no cryptography.
"""

# ruff: noqa: T201 - a command-line tool prints to the terminal (as **/cli.py may)

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keys.cli_kek import announce_new_kek, generate_configured_kek
from keys.cli_lifecycle import usage_counts, usage_warnings
from keys.cli_migrate_counts import save_counts
from keys.config_file import load_section, resolve_config_path
from keys.errors import ConfigError, KeyringError
from keys.kek import generate_kek_file
from keys.keystore import shredded_practices
from keys.settings import FileKekSettings, KeySettings, keystore_file
from keys.usage import open_counting_keyring, usage_counter

if TYPE_CHECKING:
    import argparse

    from keys.keyring import KeyInfo

__all__ = ["cmd_add_practice", "cmd_encrypt", "cmd_init", "cmd_list", "cmd_rotate", "settings_of"]

_PROG = "phi-keys"


def settings_of(args: argparse.Namespace) -> KeySettings:
    """The `keys:` section of the config the command names."""
    return load_section(resolve_config_path(args.config), "keys", KeySettings)


def cmd_init(args: argparse.Namespace) -> int:
    """`phi-keys init`: a new, empty keystore (and first the KEK, if asked)."""
    settings = settings_of(args)
    store_path = settings.keystore
    if store_path.exists():
        raise KeyringError(
            f"{store_path}: keystore already exists; refusing to overwrite it. "
            "Use `phi-keys list` to see its keys."
        )
    if args.generate_kek is not None:
        kek_path = Path(args.generate_kek)
        if not isinstance(settings.kek, FileKekSettings):
            raise ConfigError(
                "--generate-kek writes a KEK file, but keys.kek.provider in the config is "
                "not `file`; set `provider: file` and `path:` to that file, or drop the flag"
            )
        if kek_path.resolve() != settings.kek.path.resolve():
            raise ConfigError(
                f"--generate-kek {kek_path} is not the KEK file the config names "
                f"(keys.kek.path = {settings.kek.path}); pass that path so the new keystore "
                "can be opened later"
            )
        kek_id = generate_kek_file(kek_path)
        print(
            f"wrote new KEK to {kek_path} (mode 0600, kek id {kek_id}); back it up somewhere "
            "safe and separate: without it the keystore cannot be opened"
        )
    elif args.kek_provider is not None:
        if args.kek_provider != settings.kek.provider:
            raise ConfigError(
                f"--kek-provider {args.kek_provider} creates the KEK the config names, but "
                f"keys.kek.provider in the config is {settings.kek.provider}; set keys.kek for "
                f"{args.kek_provider} first (see config/proxy.example.yaml)"
            )
        kek_id = generate_configured_kek(settings.kek, flag="--kek-provider")
        print(announce_new_kek(settings.kek, kek_id))
    store = keystore_file(settings)
    store.create()
    print(f"created keystore {store.path} (kek id {store.kek_id}, no practices yet)")
    print(f"next: {_PROG} add-practice PRACTICE_ID")
    return 0


def cmd_add_practice(args: argparse.Namespace) -> int:
    """`phi-keys add-practice`: each practice's first active key."""
    store = keystore_file(settings_of(args))
    for info in store.add_practices(args.practices, after_shred=args.after_shred):
        print(f"added practice {info.practice}: key {info.kid} version {info.version} (active)")
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    """`phi-keys rotate`: a new active key version; the old one keeps decrypting."""
    store = keystore_file(settings_of(args))
    infos = store.rotate_all() if args.all else (store.rotate(args.practice),)
    for info in infos:
        print(f"rotated practice {info.practice}: key {info.kid} version {info.version} is active")
    if args.all:
        rotated = {i.practice for i in infos}
        for practice in sorted(shredded_practices(store.infos()) - rotated):
            print(
                f"skipped practice {practice}: it was shredded (every key destroyed); new "
                f"writes stay refused (to start it over: {_PROG} add-practice {practice} "
                "--after-shred)"
            )
    if not infos:
        print("no practice with live keys in the keystore; nothing was rotated")
    return 0


def _info_json(info: KeyInfo) -> dict[str, object]:
    return {
        "practice": info.practice,
        "kid": info.kid,
        "version": info.version,
        "state": info.state.value,
        "created_at": info.created_at.isoformat(),
    }


def cmd_list(args: argparse.Namespace) -> int:
    """`phi-keys list`: every key's facts and usage count, never material."""
    settings = settings_of(args)
    infos = keystore_file(settings).infos()
    counts = usage_counts(settings)
    used = counts or {}
    if args.json:
        print(
            json.dumps(
                [
                    _info_json(i) | ({"encryptions": used.get(i.kid, 0)} if args.usage else {})
                    for i in infos
                ],
                indent=2,
            )
        )
    else:
        rows = [("PRACTICE", "KID", "VERSION", "STATE", "CREATED", "ENCRYPTIONS")]
        rows += [
            (
                i.practice,
                i.kid,
                str(i.version),
                i.state.value,
                i.created_at.isoformat(),
                "?" if counts is None else str(used.get(i.kid, 0)),
            )
            for i in infos
        ]
        widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    for line in usage_warnings(settings, infos, used):
        print(f"{_PROG}: {line}", file=sys.stderr)
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    """`phi-keys encrypt`: one value from stdin to a token, in the config's mode."""
    settings = settings_of(args)
    counter = usage_counter(settings)
    keyring = open_counting_keyring(settings, counter)
    try:
        value = sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError:
        raise KeyringError("the value on stdin is not UTF-8 text; nothing was encrypted") from None
    if value.endswith("\r\n"):
        value = value[:-2]
    elif value.endswith("\n"):
        value = value[:-1]
    deterministic, why = _encrypt_mode(args)
    token = keyring.encrypt(args.practice, args.field, value, deterministic=deterministic)
    save_counts(counter)  # before printing: a reader gone early must not lose the count
    print(token)
    mode = "deterministic (AES-SIV)" if deterministic else "randomized (AES-GCM)"
    print(f"{_PROG}: encrypted as field class {args.field}, {mode}: {why}", file=sys.stderr)
    return 0


def _encrypt_mode(args: argparse.Namespace) -> tuple[bool, str]:
    """Deterministic or not, and why: the config's fields.classes decides when it has one.

    Found in issue 15: `--field ssn` ignored `deterministic: true`, so the token could not be
    found by the portal's equality lookups, which compare the tokens the proxy writes.
    """
    from proxy.transform.settings import FieldSettings  # noqa: PLC0415 - keys need no proxy

    config = resolve_config_path(args.config)
    classes = load_section(config, "fields", FieldSettings).classes
    if not classes:
        if args.deterministic:
            return True, f"--deterministic (the config {config} has no fields.classes)"
        return False, f"the default (the config {config} has no fields.classes)"
    spec = classes.get(args.field)
    if spec is None:
        raise ConfigError(
            f"field class {args.field!r} is not defined under fields.classes in {config} "
            f"(defined: {', '.join(sorted(classes))}), so the proxy would not know how to show "
            "the token; use one of those, or add the class to the config first. Nothing was "
            "encrypted"
        )
    if args.deterministic and not spec.deterministic:
        raise ConfigError(
            f"--deterministic, but fields.classes.{args.field} in {config} is randomized (no "
            "`deterministic: true`): the proxy writes this class randomized, so a "
            "deterministic token would not match what it stores. Drop --deterministic, or "
            "change the config first. Nothing was encrypted"
        )
    setting = "true" if spec.deterministic else "false (the default)"
    return spec.deterministic, f"fields.classes.{args.field}.deterministic is {setting} in {config}"

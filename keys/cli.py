"""`phi-keys`: create the keystore, add practices, rotate keys, list them, encrypt one value.

Every command reads the `keys:` section of the config (`-c FILE` or PHI_PROXY_CONFIG). Errors
are one clear line on stderr saying what happened and what to do; exit status 2 means a usage
or config problem, 1 an operational failure (keystore, KEK, key state). Key material is never
printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from keys.broken_pipe import finish_despite_closed_output, quiet_on_broken_pipe
from keys.cli_audit import READ_ONLY_COMMANDS, audit_key_change, committed
from keys.cli_canary import add_canary_command, canary_is_read_only
from keys.cli_kek import announce_new_kek, generate_configured_kek
from keys.cli_lifecycle import add_lifecycle_commands, usage_counts, usage_warnings
from keys.cli_migrate import add_migrate_commands, save_counts
from keys.config_file import CONFIG_ENV_VAR, load_section, resolve_config_path
from keys.errors import ConfigError, KeyringError, PhiProxyError
from keys.kek import generate_kek_file
from keys.keystore import shredded_practices
from keys.settings import FileKekSettings, KeySettings, keystore_file
from keys.usage import open_counting_keyring, usage_counter

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from keys.keyring import KeyInfo

__all__ = ["build_parser", "main"]

_PROG = "phi-keys"
_EXIT_OPERATIONAL = 1
_EXIT_USAGE = 2


def _settings(args: argparse.Namespace) -> KeySettings:
    return load_section(resolve_config_path(args.config), "keys", KeySettings)


def _cmd_init(args: argparse.Namespace) -> int:
    settings = _settings(args)
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


def _cmd_add_practice(args: argparse.Namespace) -> int:
    store = keystore_file(_settings(args))
    for info in store.add_practices(args.practices, after_shred=args.after_shred):
        print(f"added practice {info.practice}: key {info.kid} version {info.version} (active)")
    return 0


def _cmd_rotate(args: argparse.Namespace) -> int:
    store = keystore_file(_settings(args))
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


def _cmd_list(args: argparse.Namespace) -> int:
    settings = _settings(args)
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


def _cmd_encrypt(args: argparse.Namespace) -> int:
    settings = _settings(args)
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
    token = keyring.encrypt(args.practice, args.field, value, deterministic=args.deterministic)
    save_counts(counter)  # before printing: a reader gone early must not lose the count
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for `phi-keys` (exposed for docs and tests)."""
    config_help = f"config file (default: ${CONFIG_ENV_VAR})"
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Manage phi-proxy's per-practice data keys and keystore file.",
    )
    parser.add_argument("-c", "--config", metavar="FILE", help=config_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "-c", "--config", metavar="FILE", help=config_help, default=argparse.SUPPRESS
        )
        return p

    p = command("init", "create a new, empty keystore (refuses to overwrite one)")
    first = p.add_mutually_exclusive_group()
    first.add_argument(
        "--generate-kek",
        metavar="PATH",
        help="first write a new KEK file at PATH (mode 0600; must be keys.kek.path; never "
        "overwrites)",
    )
    first.add_argument(
        "--kek-provider",
        choices=["pkcs11", "aws-kms"],
        help="first create the KEK keys.kek names: pkcs11 makes a non-extractable AES-256 key "
        "labelled keys.kek.key_label in the token (refuses a label in use); aws-kms keys are "
        "made by your infrastructure tooling",
    )
    p.set_defaults(handler=_cmd_init)

    p = command("add-practice", "give each new practice its first active key")
    p.add_argument("practices", nargs="+", metavar="PRACTICE")
    p.add_argument(
        "--after-shred",
        action="store_true",
        help="also give a shredded practice (every key destroyed) a new active key: a "
        "deliberate fresh start; its old data stays unreadable",
    )
    p.set_defaults(handler=_cmd_add_practice)

    p = command("rotate", "make a new active key version; the old one keeps decrypting")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--practice", metavar="PRACTICE", help="rotate this practice")
    which.add_argument("--all", action="store_true", help="rotate every practice")
    p.set_defaults(handler=_cmd_rotate)

    p = command("list", "list keys: practice, key id, version, state, created (never material)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--usage", action="store_true", help="with --json: add each key's encryption count"
    )
    p.set_defaults(handler=_cmd_list)

    p = command("encrypt", "encrypt one value read from stdin and print its token")
    p.add_argument("--practice", required=True, metavar="PRACTICE")
    p.add_argument("--field", required=True, metavar="CLASS", help="field class, e.g. ssn")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="AES-SIV: equal values give equal tokens (only for fields looked up by equality)",
    )
    p.set_defaults(handler=_cmd_encrypt)

    def with_settings(
        run: Callable[[argparse.Namespace, KeySettings], int],
    ) -> Callable[[argparse.Namespace], int]:
        return lambda args: run(args, _settings(args))

    add_lifecycle_commands(command, with_settings)
    add_migrate_commands(command, with_settings)
    add_canary_command(command, with_settings)
    return parser


def _exit_status(exc: PhiProxyError) -> int:
    print(f"{_PROG}: {exc}", file=sys.stderr)
    return _EXIT_USAGE if isinstance(exc, ConfigError) else _EXIT_OPERATIONAL


def _run(args: argparse.Namespace, *, changes_keys: bool) -> int:
    """Run the command; audit it when it succeeded, or when it committed anything and failed.

    A table run commits batch by batch, so a run that exits 1 (a practice without a key,
    tokens left behind) or stops on an error has still changed stored data: the trail must
    say so. An audit failure after a handler error is reported too (both lines, exit 1).
    """
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
    changes_keys = args.command not in READ_ONLY_COMMANDS and not canary_is_read_only(args)
    with finish_despite_closed_output() if changes_keys else contextlib.nullcontext():
        return _run(args, changes_keys=changes_keys)

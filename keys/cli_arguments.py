"""The `phi-keys` command line: every command and option, and the handler that runs each.

Handlers are named by module and function and imported only when their command runs
(`later`), so `phi-keys --help` and a usage error load no cryptography, pydantic or database
driver. The table commands (rewrap, encrypt-existing) run inside this one process: tokens are
opened and values encrypted in memory, and only tokens are written out.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from keys.cli_options import add_config_option, add_version_option
from keys.migrate import DEFAULT_BATCH

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Later", "build_parser", "later", "table_arguments"]


@dataclass(frozen=True, slots=True)
class Later:
    """The handler `module.name`, imported when its command runs (`resolve` for tests)."""

    module: str
    name: str
    #: Called as `name(args, keys_settings)` with the config's `keys:` section.
    settings: bool = False

    def resolve(self) -> Callable[..., int]:
        """The handler function itself (imports its module)."""
        handler: Callable[..., int] = getattr(importlib.import_module(self.module), self.name)
        return handler

    def __call__(self, args: argparse.Namespace) -> int:
        """Run the command (the exit status)."""
        handler = self.resolve()
        if not self.settings:
            return int(handler(args))
        from keys.cli_commands import settings_of  # noqa: PLC0415 - loads pydantic

        return int(handler(args, settings_of(args)))


def later(module: str, name: str, *, settings: bool = False) -> Later:
    """The handler `module.name`, imported when its command runs."""
    return Later(module, name, settings)


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree for `phi-keys` (exposed for docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="phi-keys",
        description="Manage phi-proxy's per-practice data keys and keystore file.",
    )
    add_config_option(parser, subcommand=False)
    add_version_option(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config_option(p, subcommand=True)
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
    p.set_defaults(handler=later("keys.cli_commands", "cmd_init"))

    p = command("add-practice", "give each new practice its first active key")
    p.add_argument("practices", nargs="+", metavar="PRACTICE")
    p.add_argument(
        "--after-shred",
        action="store_true",
        help="also give a shredded practice (every key destroyed) a new active key: a "
        "deliberate fresh start; its old data stays unreadable",
    )
    p.set_defaults(handler=later("keys.cli_commands", "cmd_add_practice"))

    p = command("rotate", "make a new active key version; the old one keeps decrypting")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--practice", metavar="PRACTICE", help="rotate this practice")
    which.add_argument("--all", action="store_true", help="rotate every practice")
    p.set_defaults(handler=later("keys.cli_commands", "cmd_rotate"))

    p = command("list", "list keys: practice, key id, version, state, created (never material)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--usage", action="store_true", help="with --json: add each key's encryption count"
    )
    p.set_defaults(handler=later("keys.cli_commands", "cmd_list"))

    p = command("encrypt", "encrypt one value read from stdin and print its token")
    p.add_argument("--practice", required=True, metavar="PRACTICE")
    p.add_argument("--field", required=True, metavar="CLASS", help="field class, e.g. ssn")
    p.add_argument(
        "--deterministic",
        action="store_true",
        help="AES-SIV: equal values give equal tokens (only for fields looked up by equality). "
        "Only for a config without fields.classes: otherwise the class's `deterministic` "
        "setting decides, as it does for the proxy (the mode used is printed on stderr)",
    )
    p.set_defaults(handler=later("keys.cli_commands", "cmd_encrypt"))

    _add_lifecycle_commands(command)
    _add_migrate_commands(command)
    _add_canary_command(command)
    return parser


def _add_lifecycle_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Register `rotate-kek`, `retire`, `unretire` and `shred` on the phi-keys parser."""
    _add_rotate_kek_command(command)

    p = command("retire", "stop a decrypt-only key from decrypting, once no token uses it")
    p.add_argument("--key", required=True, metavar="KID", help="key id (see `phi-keys list`)")
    p.add_argument("--scan", action="append", metavar="FILE", help="dump/export to scan")
    table_arguments(p, key_flag="--row-key")
    p.add_argument("--force", action="store_true", help="retire without a scan")
    p.add_argument("--reason", metavar="TEXT", help="why (required with --force)")
    p.set_defaults(handler=later("keys.cli_lifecycle", "cmd_retire", settings=True))

    p = command("unretire", "let a retired key decrypt again (something still needed it)")
    p.add_argument("--key", required=True, metavar="KID", help="key id (see `phi-keys list`)")
    p.set_defaults(handler=later("keys.cli_lifecycle", "cmd_unretire", settings=True))

    p = command("shred", "destroy every key of a practice: its data becomes unreadable")
    p.add_argument("--practice", required=True, metavar="PRACTICE")
    p.add_argument("--confirm", required=True, metavar="PRACTICE", help="the same id again")
    p.set_defaults(handler=later("keys.cli_lifecycle", "cmd_shred", settings=True))


def _add_rotate_kek_command(
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Register `rotate-kek` on the phi-keys parser."""
    p = command(
        "rotate-kek",
        "rewrap every key under a new KEK (file, env, pkcs11 or aws-kms) in one atomic write",
    )
    new = p.add_mutually_exclusive_group(required=True)
    new.add_argument("--new-kek", type=Path, metavar="PATH", help="new KEK file")
    new.add_argument(
        "--new-config",
        metavar="FILE",
        help="a copy of the config whose keys.kek names the new KEK (any provider)",
    )
    p.add_argument(
        "--generate",
        action="store_true",
        help="create the new KEK first (a file, or a key in the pkcs11 token; never replaces one)",
    )
    p.add_argument(
        "--no-backup",
        action="store_true",
        help="do not keep <keystore>.bak-<old kek id> (the copy the old KEK still opens)",
    )
    p.set_defaults(handler=later("keys.cli_kek", "cmd_rotate_kek", settings=True))


def table_arguments(p: argparse.ArgumentParser, *, key_flag: str = "--key") -> None:
    """The table-mode flags shared by rewrap, encrypt-existing and retire --dsn."""
    p.add_argument("--dsn", metavar="DSN", help="sqlite:///file.db or postgresql://user@host/db")
    p.add_argument("--table", metavar="TABLE", help="table (or schema.table) to process")
    p.add_argument("--columns", metavar="COLS", help="comma-separated columns holding values")
    p.add_argument(
        key_flag,
        dest="key_column",
        default="id",
        metavar="COLUMN",
        help="unique, integer or text key column that orders the batches (default: id)",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, metavar="N")
    p.add_argument(
        "--pause",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sleep between batches to spare a busy production database",
    )


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="count only; write nothing")
    p.add_argument(
        "--restart",
        action="store_true",
        help="ignore the saved progress of an interrupted run and start from the top",
    )


def _add_migrate_commands(
    command: Callable[[str, str], argparse.ArgumentParser],
) -> None:
    """Register `rewrap` and `encrypt-existing` on the phi-keys parser."""
    p = command(
        "rewrap",
        "re-encrypt tokens under each practice's current key, in a file/stream or a live table",
    )
    p.add_argument("--in", dest="input", metavar="FILE", help="text to rewrap (- for stdin)")
    p.add_argument("--out", dest="output", metavar="FILE", help="where to write it (- for stdout)")
    table_arguments(p)
    _run_options(p)
    p.set_defaults(handler=later("keys.cli_rewrap", "run_rewrap", settings=True))

    p = command(
        "encrypt-existing",
        "encrypt legacy plaintext PHI in a live table; values holding tokens are left alone",
    )
    table_arguments(p)
    p.add_argument("--practice-column", metavar="COLUMN", help="column naming each row's practice")
    p.add_argument("--field", metavar="CLASS", help="field class for every column")
    p.add_argument(
        "--deterministic",
        metavar="CLASSES",
        help="comma-separated classes to encrypt with AES-SIV when the config has no "
        "fields.classes section (otherwise the config decides)",
    )
    _run_options(p)
    p.set_defaults(
        handler=later("keys.cli_encrypt_existing", "run_encrypt_existing", settings=True)
    )


def _add_canary_command(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register `phi-keys canary` on the phi-keys parser."""
    p = command(
        "canary",
        "issue tokens for a made-up patient planted as a tripwire (any read through the "
        "proxy raises an alert); list, show or remove them",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--list", dest="list_canaries", action="store_true", help="list the registered canaries"
    )
    which.add_argument("--show", metavar="ID", help="print a canary's tokens again (for planting)")
    which.add_argument(
        "--remove", metavar="ID", help="remove a canary from the register (needs --force)"
    )
    p.add_argument("--practice", metavar="PRACTICE", help="the practice the patient belongs to")
    p.add_argument(
        "--field",
        action="append",
        metavar="CLASS[=VALUE]",
        help="a field class (as under fields.classes) and the made-up value; without =VALUE "
        "the values are read from stdin, one line per bare --field, in order. Choose values "
        "that look real and no real patient has",
    )
    p.add_argument(
        "--label",
        default="",
        metavar="TEXT",
        help="a note for you, stored in clear: never the fake patient's name or portal id",
    )
    p.add_argument("--json", action="store_true", help="with --list: print JSON")
    p.add_argument("--force", action="store_true", help="with --remove: really remove it")
    p.set_defaults(handler=later("keys.cli_canary", "run_canary", settings=True))

"""Options every phi-proxy command line shares: `-c/--config` and `--version`.

One place, so `-c FILE` is accepted before and after the subcommand by all four CLIs
(`phi-grants list -c FILE` was refused while the others took it), and `--version` reads the
installed package's metadata the same way everywhere. Imports nothing heavy: `--help` and
argument errors must answer at once, also through `kubectl exec`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["CONFIG_ENV_VAR", "DISTRIBUTION", "add_config_option", "add_version_option", "version"]

#: The environment variable naming the config file when `-c` is not given.
CONFIG_ENV_VAR = "PHI_PROXY_CONFIG"
#: The installed distribution whose version `--version` prints.
DISTRIBUTION = "phi-proxy"


def add_config_option(parser: argparse.ArgumentParser, *, subcommand: bool, what: str = "") -> None:
    """Add `-c/--config FILE`; on a subcommand it overrides the one given before it.

    On a subcommand the default is SUPPRESS, so `phi-x -c A list` keeps A, while
    `phi-x list -c B` (or `phi-x -c A list -c B`) uses B.
    """
    text = f"config file (default: ${CONFIG_ENV_VAR}){what}"
    if subcommand:
        parser.add_argument("-c", "--config", metavar="FILE", help=text, default=argparse.SUPPRESS)
    else:
        parser.add_argument("-c", "--config", metavar="FILE", help=text)


def version() -> str:
    """The installed phi-proxy version, from the package metadata."""
    from importlib.metadata import PackageNotFoundError  # noqa: PLC0415 - only for --version
    from importlib.metadata import version as installed  # noqa: PLC0415

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (the phi-proxy package is not installed; run from a source tree?)"


class _VersionAction(argparse.Action):
    """Print `PROG VERSION` and exit 0; the metadata is read only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:  # noqa: ANN401
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object, **__: object) -> None:
        sys.stdout.write(f"{parser.prog} {version()}\n")  # on stdout, as argparse's own
        parser.exit()


def add_version_option(parser: argparse.ArgumentParser) -> None:
    """Add `--version` (the installed phi-proxy package's version)."""
    parser.add_argument(
        "--version", action=_VersionAction, help="print the installed version and exit"
    )

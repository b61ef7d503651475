"""The four CLIs behave alike: -c before or after the command, --version, fast --help.

Found in issue 15: `phi-grants list -c FILE` was refused while the others accepted it; no CLI
had `--version`; `--help` took 0.4-1.4 s because every CLI imported aiohttp, cryptography,
pydantic and PyJWT before parsing its arguments.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from proxy.demo.workspace import DemoPorts, create_workspace
from tests.cli_process import run_cli

BIN = Path(sys.executable).parent
CLIS = ("phi-proxy", "phi-keys", "phi-grants", "phi-audit")
#: Imported by no CLI before its arguments are good (the first part of a dotted name).
HEAVY = frozenset(
    {"aiohttp", "cryptography", "pydantic", "jwt", "asyncpg", "boto3", "pkcs11", "yaml"}
)
SUBJECT = "https://login.demo.test|alice"


def run(*argv, stdin=None, env=None):
    return run_cli(
        [str(BIN / argv[0]), *map(str, argv[1:])],
        text=True,
        input=stdin,
        timeout=120,
        check=False,
        env=env,
    )


def imported_modules(*argv):
    """(exit status, top-level packages imported) for the console script run with argv."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(BIN / argv[0]), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            names.add(name.split(".")[0])
    names.discard("package")  # the header line: "self [us] | cumulative | imported package"
    return result.returncode, names


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """The demo's config: keys for practice-a and -b, a JWKS, no grant store yet."""
    folder = tmp_path_factory.mktemp("cli") / "ws"
    folder.mkdir(mode=0o700)
    return create_workspace(folder, DemoPorts(proxy=28280, portal=28281, admin=29290)).config_path


class TestHelpIsFast:
    @pytest.mark.parametrize("cli", CLIS)
    def test_help_imports_no_heavy_module(self, cli):
        """`CLI --help` exits 0 having imported none of aiohttp, cryptography, pydantic …."""
        status, names = imported_modules(cli, "--help")
        assert status == 0
        assert "argparse" in names, "the importtime collector found nothing"
        assert not names & HEAVY, f"{cli} --help imported {sorted(names & HEAVY)}"

    @pytest.mark.parametrize(
        "argv",
        [
            ("phi-grants", "add", "--practice", "p"),  # required options missing
            ("phi-keys", "rotate"),
            ("phi-audit", "report", "--since", "yesterday"),
            ("phi-proxy", "serve", "--workers", "many"),
            ("phi-grants", "list", "--help"),
            ("phi-keys", "encrypt", "--help"),
        ],
    )
    def test_usage_errors_and_command_help_import_no_heavy_module(self, argv):
        """A usage error (exit 2) or a command's --help (exit 0) imports nothing heavy."""
        status, names = imported_modules(*argv)
        assert status == (0 if "--help" in argv else 2)
        assert not names & HEAVY, f"{argv} imported {sorted(names & HEAVY)}"


class TestVersion:
    @pytest.mark.parametrize("cli", CLIS)
    def test_version_is_the_installed_packages(self, cli):
        """`CLI --version` prints its name and the installed phi-proxy version, exit 0."""
        result = run(cli, "--version")
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{cli} {version('phi-proxy')}\n"


class TestConfigOptionPlacement:
    def test_every_cli_takes_c_before_and_after_its_command(self, config):
        """-c FILE works before and after the command, for every command tried."""
        added = run(
            "phi-grants", "add", "-c", config, "--subject", SUBJECT, "--practice", "practice-a",
            "--ttl", "1d", "--reason", "test",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        for argv, expected in (
            (("phi-grants", "list", "--json"), 0),
            (("phi-grants", "review", "--skip-usage"), 1),  # the 1-day grant expires soon
            (("phi-keys", "list"), 0),
            (("phi-audit", "verify"), 0),
            (("phi-proxy", "check-config"), 0),
        ):
            before = run(argv[0], "-c", config, *argv[1:])
            after = run(*argv, "-c", config)
            assert before.returncode == expected, (argv, before.stdout, before.stderr)
            assert after.returncode == expected, (argv, after.stdout, after.stderr)
            if "review" not in argv and "check-config" not in argv:  # those print times
                assert after.stdout == before.stdout

    def test_c_after_the_command_wins(self, config):
        """`-c WRONG list -c RIGHT` reads RIGHT: the later, nearer option decides."""
        result = run("phi-grants", "-c", "/nonexistent.yaml", "list", "-c", config)
        assert result.returncode == 0, result.stderr

    def test_demo_refuses_a_config(self, config):
        """Demo writes its own config: -c is refused, not silently ignored."""
        result = run("phi-proxy", "-c", config, "demo")
        assert result.returncode == 2
        assert "demo writes its own config" in result.stderr


@pytest.mark.parametrize("package", ["keys", "proxy.grants", "proxy.identity", "proxy.audit"])
def test_every_name_a_lazy_package_exports_loads(package):
    """The packages load their API on first use (keys._lazy); each exported name still resolves."""
    import importlib

    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        _ = module.no_such_name


def test_every_phi_keys_command_names_a_handler_that_exists():
    """phi-keys names its handlers by module and function: each one imports and is callable."""
    import argparse

    from keys.cli_arguments import Later, build_parser

    (commands,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(commands.choices) >= 11
    for name, sub in commands.choices.items():
        handler = sub.get_default("handler")
        assert isinstance(handler, Later), name
        assert callable(handler.resolve()), name

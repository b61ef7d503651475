"""`run_cli` (tests/cli_process.py) answers exactly as the console script run as a new process.

Most CLI tests run the commands through `run_cli`, which forks them from a pre-imported helper
instead of starting Python each time. These tests pin that the two are interchangeable: same
exit status, same stdout and stderr, and the run's own folder, environment and stdin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proxy.demo.workspace import DemoPorts, create_workspace
from tests.cli_process import run_cli

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-process") / "ws"
    folder.mkdir(mode=0o700)
    return create_workspace(folder, DemoPorts(proxy=28380, portal=28381, admin=29390)).config_path


def assert_answers_alike(argv):
    """The forked run and a new process give the same exit status, stdout and stderr."""
    forked = run_cli(argv, text=True)
    real = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["phi-keys", "-c", "{config}", "list"],
        ["phi-proxy", "check-config", "-c", "{config}"],
        ["phi-grants", "-c", "/nonexistent/proxy.yaml", "list"],
        ["phi-audit", "report", "--since", "yesterday"],
    ],
    ids=["keys-list", "check-config", "missing-config", "usage-error"],
)
def test_a_forked_run_prints_and_exits_like_the_console_script(config, argv):
    assert_answers_alike([str(BIN / argv[0]), *(a.format(config=config) for a in argv[1:])])


@pytest.mark.parametrize("module", ["keys", "proxy.grants"])
def test_python_dash_m_runs_the_package_main(config, module):
    assert_answers_alike([sys.executable, "-m", module, "-c", str(config), "list"])


def test_the_run_has_its_own_folder_environment_and_stdin(config):
    """A relative path resolves in `cwd`; PHI_PROXY_CONFIG comes from `env`; stdin is `input`."""
    env = {"PATH": "/usr/bin:/bin", "PHI_PROXY_CONFIG": config.name}
    done = run_cli(
        [BIN / "phi-keys", "encrypt", "--practice", "practice-a", "--field", "ssn"],
        input="900-00-0001\n",
        env=env,
        cwd=config.parent,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("phi1.")
    assert "900-00-0001" not in done.stdout

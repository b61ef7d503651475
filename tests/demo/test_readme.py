"""Every command in README.md is run by a test, and the output the README shows is real.

The README's ```console blocks are parsed into commands (`$ …`, with here-documents) and the
output lines after each. Output shown in the README must appear, in order, in the real output
once volatile parts (ports, temp paths, ids, times, ciphertext, JWTs) are normalized; a `...`
line marks output left out.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field

import pytest
from demo_helpers import REPO, free_ports, start_demo

README = REPO / "README.md"

_NORMALIZE = (
    (re.compile(r"phi1\.[a-z]\.[0-9a-f]+\.[a-z0-9_]+\.[A-Za-z0-9_-]+…?"), "<token>"),
    (re.compile(r"eyJ[A-Za-z0-9_.-]+…?"), "<jwt>"),
    (re.compile(r"/tmp/[A-Za-z0-9_.-]+"), "<tmp>"),  # noqa: S108 - matching, not creating
    (re.compile(r"127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\bg_[0-9a-f]{16}\b"), "<grant>"),
    (re.compile(r"\b[0-9a-f]{16}\b"), "<id>"),
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?Z?( UTC)?"), "<time>"),
    (re.compile(r" by \S+$"), " by <user>"),
)


def normalize(line: str) -> str:
    for pattern, replacement in _NORMALIZE:
        line = pattern.sub(replacement, line)
    return line.rstrip()


@dataclass
class Command:
    text: str
    shown: list[str] = field(default_factory=list)


def console_blocks() -> list[list[Command]]:
    """The README's console blocks, each a list of commands with the output shown after them."""
    blocks: list[list[Command]] = []
    lines = iter(README.read_text(encoding="utf-8").splitlines())
    for line in lines:
        if line.strip() != "```console":
            continue
        block: list[Command] = []
        for inner in lines:
            if inner.strip() == "```":
                break
            if inner.startswith("$ "):
                command = Command(inner[2:])
                heredoc = re.search(r"<<'?(\w+)'?", inner)
                if heredoc:
                    for body in lines:
                        command.text += "\n" + body
                        if body == heredoc.group(1):
                            break
                block.append(command)
            elif block:
                block[-1].shown.append(inner)
        blocks.append(block)
    return blocks


def kind(command: str) -> str | None:
    """Which test runs this README command."""
    rules = (
        (r"^make (run|test)\b", "make"),
        (r"^(curl |sqlite3 |\.venv/bin/phi-grants (revoke|review) )", "walkthrough"),
        (
            r"^(cat > phi\.yaml|\.venv/bin/phi-keys -c phi\.yaml|echo .*\| \.venv/bin/phi-keys)",
            "keys",
        ),
        (
            (
                r"^(cp config/proxy\.example\.yaml"
                r"|\.venv/bin/phi-\w+ (-c|check-config -c) proxy\.yaml)"
            ),
            "operator",
        ),
        (r"^(docker (build|push) |kubectl |\(umask 077; head -c 32 /dev/urandom)", "image"),
    )
    for pattern, name in rules:
        if re.search(pattern, command):
            return name
    return None


def commands_of(name: str) -> list[Command]:
    return [c for block in console_blocks() for c in block if kind(c.text) == name]


def assert_shown_in(command: Command, output: str) -> None:
    """The README's shown lines are, normalized and in order, among the real output lines."""
    actual = iter(normalize(line) for line in output.splitlines())
    for shown in command.shown:
        if shown.strip() in ("", "..."):
            continue
        want = normalize(shown)
        assert any(want == got for got in actual), (
            f"README output line not produced by `{command.text}`:\n  {shown}\nreal output:\n"
            + output
        )


def run(command: str, *, cwd, env=None) -> str:
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"`{command}` failed:\n{result.stdout}{result.stderr}"
    return result.stdout


class TestReadmeCommands:
    def test_every_command_is_run_by_a_test(self):
        """Each `$ …` line in a console block is one this module (or a named test) runs."""
        everything = [c.text for block in console_blocks() for c in block]
        assert len(everything) >= 20
        assert [c for c in everything if kind(c) is None] == []

    def test_make_targets_are_the_documented_ones(self):
        """`make run` ends in `phi-proxy demo`; `make test` runs ruff, mypy and pytest."""
        assert {c.text.split("#")[0].strip() for c in commands_of("make")} >= {
            "make run",
            "make test",
        }
        run_lines = run(
            "env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -n run", cwd=REPO
        ).splitlines()
        assert run_lines[-1].strip() == ".venv/bin/phi-proxy demo"
        with_ports = run(
            'env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -n run DEMO_ARGS="--port 18080"', cwd=REPO
        ).splitlines()
        assert with_ports[-1].strip() == ".venv/bin/phi-proxy demo --port 18080"
        assert 'make run DEMO_ARGS="--port 18080"' in README.read_text(encoding="utf-8")
        test_lines = run("env -u MAKEFLAGS -u MAKELEVEL -u MFLAGS make -n test", cwd=REPO)
        for tool in ("ruff check", "ruff format --check", "mypy --strict", "pytest"):
            assert tool in test_lines

    def test_key_round_trip(self, tmp_path):
        """The key round trip runs as written in an empty folder and prints what is shown."""
        (tmp_path / ".venv").symlink_to(REPO / ".venv")
        commands = commands_of("keys")
        assert len(commands) == 4
        for command in commands:
            assert_shown_in(command, run(command.text, cwd=tmp_path))

    def test_operator_quickstart(self, tmp_path):
        """Copy the example config, create keys, check it, add/list/offboard a grant."""
        (tmp_path / ".venv").symlink_to(REPO / ".venv")
        (tmp_path / "config").symlink_to(REPO / "config")
        commands = commands_of("operator")
        assert len(commands) == 8
        for command in commands:
            assert_shown_in(command, run(command.text, cwd=tmp_path, env={"USER": "readme"}))

    def test_image_commands_are_covered_elsewhere(self):
        """docker/kubectl lines are exercised by the Dockerfile and deploy/ tests.

        test_deploy checks the image and Secret names against the manifest; test_deploy_pod
        runs the pod's `phi-proxy serve` and `phi-grants add` as its container would.
        """
        assert (REPO / "tests/demo/test_dockerfile.py").is_file()
        assert (REPO / "tests/demo/test_deploy.py").is_file()
        assert (REPO / "tests/demo/test_deploy_pod.py").is_file()
        applied = [c.text for c in commands_of("image") if c.text.startswith("kubectl apply")]
        for command in applied:
            assert (REPO / command.split(" -f ")[1]).is_file()


@pytest.mark.slow
class TestReadmeDemo:
    def test_demo_story_and_walkthrough_are_real(self):
        """`make run`'s story and every walkthrough command's output are what the demo gives."""
        demo = start_demo(free_ports(3))
        try:
            (make_run,) = [c for c in commands_of("make") if c.text == "make run"]
            assert_shown_in(make_run, demo.text)
            walkthrough = commands_of("walkthrough")
            assert len(walkthrough) >= 8
            env = {**demo.exports(), "USER": "readme"}
            for command in walkthrough:
                assert_shown_in(command, run(command.text, cwd=REPO, env=env))
        finally:
            assert demo.stop() == 0

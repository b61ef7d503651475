"""The Dockerfile: its structure is linted, and what it builds is built and run here.

No Docker engine runs on our build machines, so the build test repeats the Dockerfile's steps
without one: copy exactly the files its build stage copies, build a wheel from them with build
isolation (as `python -m build --wheel` does), install that wheel into a fresh virtualenv, and
run the image's command line (`phi-proxy serve -c …`) from it in front of the demo portal.
The fresh virtualenv borrows the already-installed third-party dependencies through a .pth
line (no network needed for them); phi-proxy itself comes only from the wheel.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from demo_helpers import REPO, free_ports

from proxy.demo.data import patients
from proxy.demo.portal import build_portal_app
from proxy.demo.seed import create_grants, seed_through_proxy
from proxy.demo.workspace import DemoPorts, create_workspace
from proxy.grants import SQLiteGrantStore

DOCKERFILE = REPO / "Dockerfile"


@dataclass
class Instruction:
    name: str
    args: str


def stages() -> list[list[Instruction]]:
    """The Dockerfile's instructions, continuation lines joined, grouped by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    result: list[list[Instruction]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, args = line.partition(" ")
        if name.upper() == "FROM":
            result.append([])
        result[-1].append(Instruction(name.upper(), args.strip()))
    return result


def stage_named(name: str) -> list[Instruction]:
    """The instructions of the stage `FROM … AS name`."""
    (stage,) = [stage for stage in stages() if stage[0].args.endswith(f" AS {name}")]
    return stage


def final(name: str) -> list[str]:
    return [i.args for i in stages()[-1] if i.name == name]


class TestDockerfileStructure:
    def test_multi_stage_with_a_pinned_slim_base(self):
        """Core, build and runtime stages, each FROM an exact X.Y.Z slim tag (never `latest`)."""
        froms = [stage[0].args for stage in stages()]
        assert len(froms) >= 3
        for image in froms:
            assert re.fullmatch(
                r"(python:3\.11\.\d+|rust:\d+\.\d+\.\d+)-slim-bookworm( AS \w+)?", image
            ), image
        assert froms[-1].startswith("python:")

    def test_the_compiled_core_is_built_locked_and_installed(self):
        """The core stage builds core/ with its committed Cargo.lock; the final stage has it."""
        core = stage_named("core")
        (build,) = [i.args for i in core if i.name == "RUN" and "maturin build" in i.args]
        assert "--locked" in build
        assert "--release" in build
        copies = [i.args for i in stages()[-1] if i.name == "COPY"]
        assert "--from=core /dist/*.whl /tmp/" in copies

    def test_runs_as_a_non_root_user(self):
        """The final stage switches to a named non-root user before the entrypoint."""
        (user,) = final("USER")
        assert user.split(":")[0] not in ("root", "0")
        names = [i.name for i in stages()[-1]]
        assert names.index("USER") < names.index("ENTRYPOINT")

    def test_state_volume_is_created_private_for_the_proxy_user(self):
        """/var/lib/phi-proxy exists, owned by the runtime user, 0700, before USER.

        A compose named volume copies the mount point's owner and mode on first use; without
        this it starts root-owned and the proxy cannot create its grant store or audit trail.
        """
        names = [i.name for i in stages()[-1]]
        (user,) = final("USER")
        owner = user.split(":")[0]
        creates = [
            index
            for index, i in enumerate(stages()[-1])
            if i.name == "RUN"
            and re.search(
                rf"install -d -o {owner} -g \S+ -m 0?700 /var/lib/phi-proxy(\s|$)", i.args
            )
        ]
        assert creates, "no `install -d -o USER … -m 0700 /var/lib/phi-proxy`"
        assert creates[0] < names.index("USER")
        assert any("/var/lib/phi-proxy" in args for args in final("VOLUME"))

    def test_healthcheck_asks_the_configs_admin_listener(self):
        """HEALTHCHECK runs `phi-proxy healthcheck`, which reads admin.port from the config.

        Found in issue 15: it probed a hard-coded 127.0.0.1:9090, so any other admin.port
        made a healthy container "unhealthy". The command's behaviour: tests/cli/test_healthcheck.
        """
        (check,) = final("HEALTHCHECK")
        options, _, command = check.partition("CMD")
        assert json.loads(command) == ["phi-proxy", "healthcheck"]
        assert "9090" not in check
        timeout = re.search(r"--timeout=(\d+)s", options)
        assert timeout is not None
        assert int(timeout.group(1)) > 2, "the probe itself waits up to 2 s"
        assert "PHI_PROXY_CONFIG=" in " ".join(final("ENV")), "healthcheck reads its config"

    def test_entrypoint_and_cmd(self):
        """ENTRYPOINT ["phi-proxy"], CMD ["serve", "-c", <the PHI_PROXY_CONFIG path>]."""
        (entrypoint,) = final("ENTRYPOINT")
        (cmd,) = final("CMD")
        assert json.loads(entrypoint) == ["phi-proxy"]
        argv = json.loads(cmd)
        assert argv[:2] == ["serve", "-c"]
        assert f"PHI_PROXY_CONFIG={argv[2]}" in " ".join(final("ENV"))

    def test_no_secret_or_config_is_copied_in(self):
        """COPY/ADD bring in only the source tree and the built wheel: no keys, no config."""
        copied = [i.args for stage in stages() for i in stage if i.name in ("COPY", "ADD")]
        assert not [i for stage in stages() for i in stage if i.name == "ADD"]
        for args in copied:
            assert not re.search(r"keystore|kek|\.ya?ml|config|\.env|grants|audit", args), args
        sources = {word for args in copied if "--from" not in args for word in args.split()[:-1]}
        assert sources == {
            "pyproject.toml",
            "README.md",
            "proxy",
            "keys",
            "core/Cargo.toml",
            "core/Cargo.lock",
            "core/pyproject.toml",
            "core/src",
        }

    def test_no_build_tools_in_the_final_stage(self):
        """The final stage installs only the wheel: no compilers, no `build`, no apt-get."""
        runs = " ".join(final("RUN"))
        assert "apt-get" not in runs
        assert not re.search(r"\b(gcc|build-essential|pip install[^&]* build)\b", runs)
        assert "*.whl" in runs


def stage_sources(stage: str, dest):
    """Copy exactly what the stage named `stage` copies into `dest` (same relative paths)."""
    for instruction in stage_named(stage):
        if instruction.name != "COPY":
            continue
        *sources, _target = instruction.args.split()
        for source in sources:
            origin = REPO / source
            (dest / source).parent.mkdir(parents=True, exist_ok=True)
            if origin.is_dir():
                shutil.copytree(origin, dest / source, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(origin, dest / source)


def run(argv, **kw):
    result = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory):
    """A fresh virtualenv with phi-proxy installed from a wheel built like the Dockerfile does."""
    root = tmp_path_factory.mktemp("image")
    src, dist, venv = root / "src", root / "dist", root / "venv"
    src.mkdir()
    stage_sources("build", src)
    run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(src)],
        timeout=300,
    )
    (wheel,) = dist.glob("phi_proxy-*.whl")
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin/python"
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-deps",
            str(wheel),
        ],
        timeout=300,
    )
    if shutil.which("cargo") is not None:  # the core stage: the compiled core's wheel
        stage_sources("core", src)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "-q",
                "--no-deps",
                "-w",
                str(dist),
                src / "core",
            ],
            timeout=600,
            env={**os.environ, "CARGO_TARGET_DIR": str(REPO / "core" / "target")},
        )
        (core,) = dist.glob("phi_proxy_core-*.whl")
        pip = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps"]
        run([*pip, str(core)], timeout=300)
    site = run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    # Third-party dependencies only: a path line (not a site dir), so the editable install of
    # this checkout living there is never activated.
    (Path(site.strip()) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return wheel, venv


@pytest.mark.slow
class TestImageBuild:
    def test_wheel_holds_only_the_packages(self, image_venv):
        """The wheel carries proxy/ and keys/ (with py.typed) and nothing else."""
        wheel, _ = image_venv
        names = zipfile.ZipFile(wheel).namelist()
        tops = {name.split("/")[0] for name in names}
        assert {t for t in tops if not t.endswith(".dist-info")} == {"proxy", "keys"}
        assert {"proxy/py.typed", "keys/py.typed", "proxy/demo/portal.py"} <= set(names)
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "phi-proxy = proxy.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    def test_the_image_runs_the_compiled_core_from_its_own_wheel(self, image_venv):
        """The core stage's wheel is installed and is the core the image's proxy uses."""
        _, venv = image_venv
        if shutil.which("cargo") is None:
            pytest.skip("no Rust toolchain here: the image's core stage cannot be repeated")
        code = (
            "import phi_proxy_core; from keys.native import core_description; "
            "print(phi_proxy_core.__file__); print(core_description())"
        )
        where, description = run([str(venv / "bin/python"), "-c", code], cwd=venv).splitlines()
        assert where.startswith(str(venv))
        assert description.startswith("compiled core")

    def test_installed_code_comes_from_the_wheel(self, image_venv):
        """In the fresh venv, `proxy` is imported from the venv, not from this checkout."""
        _, venv = image_venv
        where = run(
            [str(venv / "bin/python"), "-c", "import proxy; print(proxy.__file__)"], cwd=venv
        )
        assert where.startswith(str(venv))

    async def test_image_command_serves_the_demo_portal(self, image_venv, tmp_path):
        """`phi-proxy serve -c …` from the wheel: healthy, ready, decrypts for alice only."""
        _, venv = image_venv
        proxy_port, portal_port, admin_port = free_ports(3)
        ports = DemoPorts(proxy=proxy_port, portal=portal_port, admin=admin_port)
        workspace = create_workspace(tmp_path, ports)
        portal = web.AppRunner(build_portal_app(workspace.portal_db))
        await portal.setup()
        await web.TCPSite(portal, "127.0.0.1", portal_port).start()
        cmd = json.loads(final("CMD")[0])
        argv = [str(venv / "bin" / json.loads(final("ENTRYPOINT")[0])[0]), *cmd[:2]]
        process = await asyncio.create_subprocess_exec(
            *argv,
            str(workspace.config_path),
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with aiohttp.ClientSession() as http:
                admin = f"http://127.0.0.1:{admin_port}"
                deadline = time.monotonic() + 20
                while True:
                    try:
                        async with http.get(f"{admin}/healthz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    assert process.returncode is None, await process.stderr.read()
                    assert time.monotonic() < deadline, "phi-proxy did not become healthy"
                    await asyncio.sleep(0.1)
                async with http.get(f"{admin}/readyz") as response:
                    assert response.status == 200
                proxy_url = f"http://127.0.0.1:{proxy_port}"
                store = SQLiteGrantStore(
                    workspace.settings.grants.sqlite_path, max_ttl=workspace.settings.grants.max_ttl
                )
                try:
                    await create_grants(store, now=datetime.now(UTC))
                finally:
                    await store.close()
                registrars = {
                    practice: workspace.issuer.mint(sub, now=time.time())
                    for practice, sub in (("practice-a", "alice"), ("practice-b", "bob"))
                }
                await seed_through_proxy(proxy_url, registrars)
                url = f"{proxy_url}/api/practices/practice-a/patients/1"
                for sub, expected in (("alice", patients()[0].ssn), ("mallory", "***-**-1111")):
                    token = workspace.issuer.mint(sub, now=time.time())
                    async with http.get(url, headers={"Authorization": f"Bearer {token}"}) as r:
                        assert (await r.json())["ssn"] == expected
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
            await portal.cleanup()

"""deploy/compose-secrets.sh and the Compose service: the steps as written give a proxy that starts.

Compose without swarm bind-mounts a `secrets: file:` with the host's owner and mode, so a 0600
keystore.json made by the operator cannot be read by the container's UID. The steps the compose
file's header gives are run here as written (phi-keys with a host-side keys.yaml, then the
script), and the service is replayed: `phi-proxy serve` with deploy/config.yaml as the
service's `user:`, the secret at its path, the state on a folder made as the image makes its
volume's mount point, and the environment the header exports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
from demo_helpers import BIN, REPO, free_ports
from test_deploy import compose
from test_deploy_pod import interpreter

from proxy.identity import DemoIssuer

SCRIPT = REPO / "deploy" / "compose-secrets.sh"
KEYS_YAML = "keys: {keystore: ./keystore.json, kek: {provider: file, path: ./kek.b64}}"

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another UID needs root")


def proxy_ids() -> tuple[int, int]:
    uid, gid = compose()["services"]["phi-proxy"]["user"].split(":")
    return int(uid), int(gid)


def run(argv, cwd, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, **kw)


def header_steps(deploy_dir: Path) -> None:
    """Steps 1 and 2 of the compose file's header, in `deploy_dir`."""
    (deploy_dir / "keys.yaml").write_text(KEYS_YAML + "\n", encoding="utf-8")
    for argv in (
        ["init", "--generate-kek", "kek.b64"],
        ["add-practice", "practice-a", "practice-b"],
    ):
        done = run([str(BIN / "phi-keys"), "-c", "keys.yaml", *argv], deploy_dir)
        assert done.returncode == 0, done.stderr
    done = run(["bash", "./compose-secrets.sh"], deploy_dir)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def deploy_dir():
    """A copy of deploy/ (without secrets) that other users may enter, as a checkout would be."""
    root = Path(tempfile.mkdtemp(prefix="phi-compose-"))
    root.chmod(0o755)
    folder = root / "deploy"
    shutil.copytree(REPO / "deploy", folder, ignore=shutil.ignore_patterns("keystore.json*"))
    yield folder
    shutil.rmtree(root)


class TestComposeSecretsScript:
    def test_the_compose_file_tells_to_run_it_and_it_uses_the_compose_user(self):
        """The header names the step; the script gives the file to compose's `user:`."""
        header = (REPO / "deploy/docker-compose.yaml").read_text(encoding="utf-8")
        assert "sudo ./compose-secrets.sh" in header
        assert KEYS_YAML in header
        text = SCRIPT.read_text(encoding="utf-8")
        uid, gid = proxy_ids()
        assert f"\nuid={uid} " in text
        assert f"\ngid={gid}\n" in text
        assert SCRIPT.stat().st_mode & stat.S_IXUSR

    @as_root
    def test_the_header_steps_give_a_keystore_only_the_proxy_user_can_read(self, deploy_dir):
        """phi-keys as documented, then the script: 10001's, 0400, readable by 10001 alone."""
        header_steps(deploy_dir)
        keystore = deploy_dir / "keystore.json"
        info = keystore.stat()
        assert (info.st_uid, info.st_gid) == proxy_ids()
        assert stat.S_IMODE(info.st_mode) == 0o400
        uid, gid = proxy_ids()
        read = run(["cat", str(keystore)], deploy_dir, user=uid, group=gid, extra_groups=[])
        assert read.returncode == 0, read.stderr
        other = run(
            ["cat", str(keystore)], deploy_dir, user=uid + 1, group=gid + 1, extra_groups=[]
        )
        assert other.returncode != 0
        for name in ("keystore.json", "kek.b64", "audit.key", "keys.yaml", "audit.jsonl"):
            ignored = run(["git", "check-ignore", "-q", f"deploy/{name}"], REPO)
            assert ignored.returncode == 0, f"deploy/{name} is not git-ignored"

    def test_a_missing_keystore_is_named_with_what_to_do(self, deploy_dir):
        """No keystore.json yet: exit 1, the path and "create it with phi-keys first"."""
        done = run(["bash", "./compose-secrets.sh"], deploy_dir)
        assert done.returncode == 1
        assert "keystore.json does not exist: create it with phi-keys first" in done.stderr

    @as_root
    def test_without_root_it_says_to_use_sudo(self, deploy_dir):
        """Run by another user: exit 1 and the sudo command, nothing changed."""
        keystore = deploy_dir / "keystore.json"
        keystore.write_text("{}", encoding="utf-8")
        keystore.chmod(0o644)
        uid, gid = proxy_ids()
        done = run(
            ["bash", "./compose-secrets.sh"],
            deploy_dir,
            user=uid + 1,
            group=gid + 1,
            extra_groups=[],
        )
        assert done.returncode == 1
        assert "only root can give" in done.stderr
        assert "run: sudo ./compose-secrets.sh" in done.stderr
        assert stat.S_IMODE(keystore.stat().st_mode) == 0o644


@as_root
@pytest.mark.slow
class TestComposeService:
    async def test_the_service_starts_with_the_header_steps_and_deploy_config(self, deploy_dir):
        """deploy/config.yaml, the secret, the state volume and the exported keys: ready."""
        header_steps(deploy_dir)
        service = compose()["services"]["phi-proxy"]
        uid, gid = proxy_ids()
        mounts = dict(v.split(":")[1::-1] for v in service["volumes"])  # target → source
        state_target = next(t for t, src in mounts.items() if not src.startswith("."))
        state = deploy_dir.parent / "state"  # the named volume: the image's 0700 mount point
        state.mkdir(mode=0o700)
        os.chown(state, uid, gid)
        secret = f"/run/secrets/{service['secrets'][0]['target']}"
        port, admin = free_ports(2)
        text = (deploy_dir / "config.yaml").read_text(encoding="utf-8")
        text = text.replace(secret, str(deploy_dir / "keystore.json"))
        text = text.replace(state_target, str(state))
        text = text.replace("0.0.0.0", "127.0.0.1")  # noqa: S104 - loopback in a test
        # The IdP's keys from a file (the test has no IdP to fetch them from): /readyz checks them.
        jwks = DemoIssuer(issuer="https://login.example.org/realms/clinic", audience="phi-proxy")
        jwks_file = jwks.write_jwks(deploy_dir / "jwks.json")
        jwks_file.chmod(0o644)
        url_line = next(line for line in text.splitlines() if "jwks_url:" in line)
        text = text.replace(url_line, f"  jwks_file: {jwks_file}")
        text = text.replace("port: 8080}", f"port: {port}}}").replace(
            "port: 9090}", f"port: {admin}}}"
        )
        config = deploy_dir.parent / "config.yaml"
        config.write_text(text, encoding="utf-8")
        python, extra = interpreter()
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PHI_PROXY_KEK": (deploy_dir / "kek.b64").read_text(encoding="utf-8").strip(),
            "PHI_PROXY_AUDIT_KEY": (deploy_dir / "audit.key").read_text(encoding="utf-8").strip(),
            **extra,
        }
        process = await asyncio.create_subprocess_exec(
            *python,
            "proxy",
            *service["command"][:2],
            str(config),
            cwd=deploy_dir.parent,
            env=env,
            user=uid,
            group=gid,
            extra_groups=[],
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with http.get(f"http://127.0.0.1:{admin}/readyz") as response:
                            if response.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    if process.returncode is not None or time.monotonic() > deadline:
                        if process.returncode is None:
                            process.kill()  # still running: its stderr ends only when it does
                        _, err = await process.communicate()
                        pytest.fail(f"the compose service did not become ready: {err.decode()}")
                    await asyncio.sleep(0.1)
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 20) == 0
        created = {p.name for p in state.iterdir()}
        assert {"grants.sqlite3", "audit.jsonl"} <= created

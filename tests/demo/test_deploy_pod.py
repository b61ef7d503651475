"""The Kubernetes manifest's pod, replayed on this host: it starts, restarts and serves.

No cluster runs here, so the test does what the kubelet and the container runtime would, with
the numbers the manifest gives: the state claim starts as a fresh root-owned folder, the kubelet
applies the pod's `fsGroup` and `fsGroupChangePolicy` to it at every mount
(`kubelet_fsgroup.mount`), the keystore arrives as a Secret file (root, the fsGroup, its
`defaultMode`), and `phi-proxy serve` runs with the container's `runAsUser`/`runAsGroup` and the
fsGroup as a supplementary group, with the ConfigMap's config (only ports, the portal's URL,
the identity provider and the mount points changed). Grants are added as an operator would,
`kubectl exec … -c phi-proxy -- phi-grants add …`: the same user, environment and config.

With the manifest's policy the proxy starts, serves, and starts again after a remount. With
the kubelet's default policy the remount makes the grant database group-writable, and the
proxy refuses it with one line saying what to change. Changing owners needs root: the test is
skipped elsewhere (CI runs as root).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import stat
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import aiohttp
import pytest
import yaml
from aiohttp import web
from demo_helpers import REPO, free_ports
from kubelet_fsgroup import mount
from test_deploy import container, k8s_docs, pod_spec

from keys.settings import keystore_file
from proxy.demo.portal import build_portal_app
from proxy.identity import DemoIssuer
from proxy.settings import load_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="replaying the kubelet's chown needs root"),
]

SSN = "900-77-1234"
MODULES = {"phi-proxy": "proxy", "phi-grants": "proxy.grants"}


def runnable_by_others(path: Path) -> bool:
    """True when a user without privileges may run `path` (every folder up to it traversable)."""
    real = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in (real, *real.parents))


def interpreter() -> tuple[list[str], dict[str, str]]:
    """How the proxy's user starts this checkout's Python: argv prefix, extra environment.

    This venv's interpreter may live in root's home (pyenv), which other users cannot enter;
    then the system's Python of the same version runs the same code and packages.
    """
    if runnable_by_others(Path(sys.executable)):
        return [sys.executable, "-m"], {}
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"{sys.executable} cannot be run by another user and there is no {system}")
    path = os.pathsep.join((str(REPO), sysconfig.get_path("purelib")))
    return [str(system), "-S", "-m"], {"PYTHONPATH": path}


class Pod:
    """The manifest's pod laid out in a folder: mounts, identity, environment."""

    def __init__(self, root: Path, upstream: str) -> None:
        self.root = root
        self.etc, self.keys, self.state = root / "etc", root / "keys", root / "state"
        for folder in (self.etc, self.keys, self.state):
            folder.mkdir(mode=0o755)
        spec = pod_spec()
        proxy = container("phi-proxy")["securityContext"]
        self.uid, self.gid = proxy["runAsUser"], proxy["runAsGroup"]
        self.fs_group = spec["securityContext"]["fsGroup"]
        self.policy = spec["securityContext"].get("fsGroupChangePolicy")
        self.port, self.admin = free_ports(2)
        self.issuer = DemoIssuer(issuer="https://idp.pod.invalid", audience="phi-proxy")
        self.issuer.write_jwks(self.etc / "jwks.json").chmod(0o644)  # a ConfigMap file
        self.env = {
            "PATH": "/usr/bin:/bin",
            "HOME": "/nonexistent",
            "USER": "phi",  # the image's user name (kubectl exec runs as it)
            "PYTHONDONTWRITEBYTECODE": "1",
            "PHI_PROXY_CONFIG": str(self.etc / "config.yaml"),
            "PHI_PROXY_KEK": base64.b64encode(secrets.token_bytes(32)).decode(),
            "PHI_PROXY_AUDIT_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        }
        if "PHI_PROXY_PURE" in os.environ:
            self.env["PHI_PROXY_PURE"] = os.environ["PHI_PROXY_PURE"]
        self._python, extra = interpreter()
        self.env.update(extra)
        self._write_config(upstream)
        self._write_secret()

    def _write_config(self, upstream: str) -> None:
        text = k8s_docs()["ConfigMap"]["data"]["config.yaml"]
        mounts = {m["name"]: m["mountPath"] for m in container("phi-proxy")["volumeMounts"]}
        text = text.replace(mounts["state"], str(self.state))
        text = text.replace(mounts["keystore"], str(self.keys))
        config = yaml.safe_load(text)
        config["listen"] = {"host": "127.0.0.1", "port": self.port}
        config["admin"] = {"host": "127.0.0.1", "port": self.admin}
        config["upstream"]["url"] = upstream
        config["identity"] = {
            "issuers": [self.issuer.issuer],
            "audience": self.issuer.audience,
            "jwks_file": str(self.etc / "jwks.json"),
        }
        (self.etc / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    def _write_secret(self) -> None:
        """keystore.json as the Secret volume has it: root, the fsGroup, `defaultMode`."""
        volume = next(v for v in pod_spec()["volumes"] if v["name"] == "keystore")
        os.environ["PHI_PROXY_KEK"] = self.env["PHI_PROXY_KEK"]
        try:
            store = keystore_file(load_settings(self.etc / "config.yaml").keys)
            store.create()
            store.add_practices(["practice-a"])
        finally:
            del os.environ["PHI_PROXY_KEK"]
        for extra in self.keys.iterdir():
            if extra.name != "keystore.json":
                extra.unlink()
        secret = self.keys / "keystore.json"
        os.chown(secret, 0, self.fs_group)
        secret.chmod(volume["secret"]["defaultMode"])

    def mount_state(self, policy: str | None) -> bool:
        """The kubelet mounting the state claim; True if it changed the files."""
        return mount(self.state, self.fs_group, policy)

    async def run(self, command: str, *argv: str) -> asyncio.subprocess.Process:
        """`command` (phi-proxy, phi-grants) in the phi-proxy container: its user, groups, env."""
        return await asyncio.create_subprocess_exec(
            *self._python,
            MODULES[command],
            *argv,
            cwd=self.root,
            env=self.env,
            user=self.uid,
            group=self.gid,
            extra_groups=[self.fs_group],
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def exec(self, *argv: str) -> str:
        """`kubectl exec … -c phi-proxy -- ARGV`: its output; fails the test on exit != 0."""
        process = await self.run(*argv)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 0, err.decode()
        return out.decode()

    def auth(self, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.issuer.mint(sub, now=time.time())}"}


async def start(pod: Pod, http: aiohttp.ClientSession) -> asyncio.subprocess.Process:
    """`phi-proxy serve` as the container runs it, once /readyz says ready."""
    cmd = container("phi-proxy")["args"]
    process = await pod.run("phi-proxy", *cmd[:2], pod.env["PHI_PROXY_CONFIG"])
    deadline = time.monotonic() + 30
    while True:
        try:
            async with http.get(f"http://127.0.0.1:{pod.admin}/readyz") as response:
                if response.status == 200:
                    return process
        except aiohttp.ClientConnectionError:
            pass
        if process.returncode is not None or time.monotonic() > deadline:
            if process.returncode is None:
                process.kill()  # still running: its stderr ends only when it does
            _, err = await process.communicate()
            pytest.fail(f"phi-proxy did not become ready: {err.decode()}")
        await asyncio.sleep(0.1)


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 20) == 0


async def ssn_seen_by(pod: Pod, http: aiohttp.ClientSession, sub: str) -> str:
    url = f"http://127.0.0.1:{pod.port}/api/practices/practice-a/patients/1"
    async with http.get(url, headers=pod.auth(sub)) as response:
        assert response.status == 200
        return (await response.json())["ssn"]


@pytest.fixture
def pod_root():
    """A folder others may traverse (the proxy's UID must reach it), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="phi-pod-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.fixture
async def pod(pod_root):
    """The pod's folders, files and identities in `pod_root`, and the portal it fronts."""
    root = pod_root
    portal_port = free_ports(1)[0]
    runner = web.AppRunner(build_portal_app(root / "portal.sqlite3"))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", portal_port).start()
    try:
        yield Pod(root, f"http://127.0.0.1:{portal_port}")
    finally:
        await runner.cleanup()


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


class TestManifestPod:
    async def test_starts_serves_and_starts_again_after_a_remount(self, pod):
        """Fresh claim, grant via exec, plaintext for the grantee; remount, restart: the same."""
        assert pod.policy == "OnRootMismatch"
        assert pod.mount_state(pod.policy), "the first mount of the empty claim is walked"
        async with aiohttp.ClientSession() as http:
            proxy = await start(pod, http)
            try:
                await pod.exec(
                    "phi-grants",
                    "add",
                    "--subject",
                    f"{pod.issuer.issuer}|alice",
                    "--practice",
                    "practice-a",
                    "--ttl",
                    "1d",
                    "--reason",
                    "pod test",
                )
                patient = {
                    "name": "Pat Pod",
                    "date_of_birth": "1970-01-01",
                    "ssn": SSN,
                    "insurance": {"carrier": "Sample", "member_id": "POD-1"},
                    "medical_history": "none (synthetic)",
                }
                url = f"http://127.0.0.1:{pod.port}/api/practices/practice-a/patients"
                async with http.post(url, json=patient, headers=pod.auth("alice")) as response:
                    assert response.status == 201, await response.text()
                assert await ssn_seen_by(pod, http, "alice") == SSN
            finally:
                await stop(proxy)
            assert not pod.mount_state(pod.policy), "a remount leaves the files alone"
            assert modes(pod.state)["grants.sqlite3"] == 0o600
            proxy = await start(pod, http)
            try:
                assert await ssn_seen_by(pod, http, "alice") == SSN
                assert await ssn_seen_by(pod, http, "mallory") == "***-**-1234"
                assert "1 grant(s)" in await pod.exec("phi-grants", "list")
            finally:
                await stop(proxy)
        assert all(mode & 0o022 == 0 for mode in modes(pod.state).values()), modes(pod.state)

    async def test_the_default_policy_is_refused_with_the_fix_in_one_line(self, pod):
        """Without OnRootMismatch the remount makes the database 0660: refused, fix named."""
        pod.mount_state(None)
        async with aiohttp.ClientSession() as http:
            await stop(await start(pod, http))
        assert pod.mount_state(None)
        assert modes(pod.state)["grants.sqlite3"] == 0o660
        process = await pod.run("phi-proxy", "serve", "-c", pod.env["PHI_PROXY_CONFIG"])
        _, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 1
        lines = err.decode().strip().splitlines()
        assert len(lines) == 1, lines
        (line,) = lines
        assert line.startswith("error: ")
        assert "grants.sqlite3: the grant database is writable by group or others" in line
        assert "`fsGroupChangePolicy: OnRootMismatch`" in line
        assert f"`chmod 600 {pod.state / 'grants.sqlite3'}`" in line

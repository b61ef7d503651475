"""deploy/compose-secrets.sh: the keystore compose mounts is readable by the proxy's user only.

Compose without swarm bind-mounts a `secrets: file:` with the host's owner and mode, so a 0600
keystore.json made by the operator cannot be read by the container's UID. The steps the compose
file's header gives are run here as written (phi-keys with a host-side keys.yaml, then the
script), and the result is read as the container's user would.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from demo_helpers import BIN, REPO
from test_deploy import compose

SCRIPT = REPO / "deploy" / "compose-secrets.sh"
KEYS_YAML = "keys: {keystore: ./keystore.json, kek: {provider: file, path: ./kek.b64}}"

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another UID needs root")


def proxy_ids() -> tuple[int, int]:
    uid, gid = compose()["services"]["phi-proxy"]["user"].split(":")
    return int(uid), int(gid)


def run(argv, cwd, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, **kw)


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
        (deploy_dir / "keys.yaml").write_text(KEYS_YAML + "\n", encoding="utf-8")
        for argv in (
            ["init", "--generate-kek", "kek.b64"],
            ["add-practice", "practice-a", "practice-b"],
        ):
            done = run([str(BIN / "phi-keys"), "-c", "keys.yaml", *argv], deploy_dir)
            assert done.returncode == 0, done.stderr
        done = run(["bash", "./compose-secrets.sh"], deploy_dir)
        assert done.returncode == 0, done.stderr
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

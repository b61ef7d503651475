"""The grant database's file modes are enforced, and an offboard that revokes nothing says so."""

from __future__ import annotations

import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from grants_helpers import ALICE, T0, request_for

from proxy.grants import GrantStoreUnavailable, SQLiteGrantStore

sys.path.insert(0, str(Path(__file__).parents[1] / "blackbox"))

from typing import TYPE_CHECKING

import blackbox_env

from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

BIN = Path(sys.executable).parent
PHI_GRANTS = BIN / "phi-grants"
PHI_PROXY = BIN / "phi-proxy"
SUBJECT = "https://login.a.test|alice-sub"
WRITABLE = "the grant database is writable by group or others"


def _run(*argv: str | Path, user: str = "hr-automation") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"SUDO_USER", "PHI_PROXY_CONFIG"}}
    env["USER"] = user
    return run_cli([str(a) for a in argv], text=True, env=env, timeout=60, check=False)


@pytest.fixture
def config(tmp_path):
    """A grants-only config whose store exists (created 0600 by `phi-grants add`)."""
    path = tmp_path / "proxy.yaml"
    path.write_text("grants:\n  store: grants.sqlite3\n  max_ttl: 90d\n")
    added = _run(
        PHI_GRANTS, "-c", path, "add", "--subject", SUBJECT, "--practice", "pr-a",
        "--ttl", "7d", "--reason", "cover",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    return path


async def _open_and_close(path: Path) -> None:
    store = SQLiteGrantStore(path, max_ttl=timedelta(days=90))
    await store.close()


# ---- F4: a grant database others may write is refused; readable is a warning -----------------


class TestGrantStoreModes:
    @pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
    @pytest.mark.parametrize("mode", [0o666, 0o620, 0o602])
    async def test_a_writable_database_is_refused(self, tmp_path, suffix, mode):
        path = tmp_path / "grants.sqlite3"
        await _open_and_close(path)
        loose = path.with_name(path.name + suffix)
        loose.touch(mode=0o600)  # an empty -wal/-shm is what SQLite leaves between runs
        loose.chmod(mode)
        with pytest.raises(GrantStoreUnavailable) as caught:
            SQLiteGrantStore(path)
        message = str(caught.value)
        assert message.startswith(f"{loose}: {WRITABLE} (mode {mode:04o})")
        assert f"chmod 600 {loose}" in message
        assert "grant themselves access" in message

    async def test_the_kubelets_fs_group_change_is_named_with_its_fix(self, tmp_path):
        """g+rw in a setgid folder of the file's group (the kubelet's mark): OnRootMismatch."""
        volume = tmp_path / "volume"
        volume.mkdir()
        path = volume / "grants.sqlite3"
        await _open_and_close(path)
        os.chown(volume, -1, path.stat().st_gid)
        volume.chmod(0o2770)
        path.chmod(0o660)
        with pytest.raises(GrantStoreUnavailable) as caught:
            SQLiteGrantStore(path)
        message = str(caught.value)
        assert "\n" not in message
        assert f"chmod 600 {path}" in message
        assert "set `fsGroupChangePolicy: OnRootMismatch` in the pod's securityContext" in message

    async def test_a_plain_chmod_is_not_blamed_on_kubernetes(self, tmp_path):
        """The same mode in an ordinary folder: the refusal names no fsGroup."""
        path = tmp_path / "grants.sqlite3"
        await _open_and_close(path)
        path.chmod(0o660)
        with pytest.raises(GrantStoreUnavailable) as caught:
            SQLiteGrantStore(path)
        assert "fsGroup" not in str(caught.value)

    async def test_a_readable_database_is_used_with_a_warning(self, tmp_path, caplog):
        path = tmp_path / "grants.sqlite3"
        store = SQLiteGrantStore(path, max_ttl=timedelta(days=90))
        await store.add(request_for(start=T0), now=T0)
        await store.close()
        path.chmod(0o644)
        caplog.set_level(logging.WARNING, logger="proxy.grants.sqlite_store")
        store = SQLiteGrantStore(path, max_ttl=timedelta(days=90))
        try:
            assert [g.subject for g in await store.list()] == [ALICE]
        finally:
            await store.close()
        [record] = [r for r in caplog.records if r.name == "proxy.grants.sqlite_store"]
        assert record.levelno == logging.WARNING
        assert "grant database is readable or writable by group or others (mode 0644)" in (
            record.getMessage()
        )
        assert "used anyway" in record.getMessage()

    async def test_a_private_database_gives_no_warning(self, tmp_path, caplog):
        caplog.set_level(logging.WARNING, logger="proxy.grants.sqlite_store")
        await _open_and_close(tmp_path / "grants.sqlite3")
        await _open_and_close(tmp_path / "grants.sqlite3")
        assert not [r for r in caplog.records if r.name == "proxy.grants.sqlite_store"]

    def test_phi_grants_refuses_with_the_fix_and_changes_nothing(self, config):
        db = config.parent / "grants.sqlite3"
        db.chmod(0o666)
        before = db.read_bytes()
        listed = _run(PHI_GRANTS, "-c", config, "list")
        assert listed.returncode == 1
        assert listed.stderr.startswith(f"phi-grants: {db}: {WRITABLE} (mode 0666)")
        assert listed.stdout == ""
        revoked = _run(PHI_GRANTS, "-c", config, "offboard", "--subject", SUBJECT, "--reason", "x")
        assert revoked.returncode == 1
        assert WRITABLE in revoked.stderr
        assert db.read_bytes() == before

    def test_phi_grants_warns_on_a_readable_database(self, config):
        db = config.parent / "grants.sqlite3"
        db.chmod(0o644)
        listed = _run(PHI_GRANTS, "-c", config, "list")
        assert listed.returncode == 0, listed.stderr
        assert "grant database is readable or writable by group or others (mode 0644)" in (
            listed.stderr
        )

    def test_the_proxy_refuses_to_start_and_check_config_says_why(self, tmp_path):
        """Fail closed at start, with the reason on stderr (not a traceback)."""
        config, _, _ = blackbox_env.write_env_files(tmp_path, "http://127.0.0.1:9")
        db = tmp_path / "grants.sqlite3"
        db.touch(mode=0o600)
        db.chmod(0o666)
        checked = _run(PHI_PROXY, "check-config", "-c", config)
        assert checked.returncode == 1
        assert f"error: {db}: {WRITABLE}" in checked.stderr
        assert "ok:" not in checked.stdout
        served = _run(PHI_PROXY, "serve", "-c", config)
        assert served.returncode == 1
        assert f"error: {db}: {WRITABLE}" in served.stderr
        assert "Traceback" not in served.stderr


# ---- F8: offboard that revokes nothing exits 1 -----------------------------------------------


class TestOffboardNothing:
    def test_a_typo_in_the_subject_exits_1_and_says_so(self, config):
        result = _run(
            PHI_GRANTS, "-c", config, "offboard", "--subject", "https://login.a.test|alcie-sub",
            "--reason", "left",
        )  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.startswith(
            "phi-grants: https://login.a.test|alcie-sub has no grant in this store, now or "
            "before; nothing was revoked"
        )
        assert result.stdout == ""
        still = _run(PHI_GRANTS, "-c", config, "list", "--active")
        assert "alice-sub" in still.stdout  # alice's grant is untouched

    def test_an_issuer_with_a_trailing_slash_exits_1(self, config):
        result = _run(
            PHI_GRANTS, "-c", config, "offboard", "--subject", "https://login.a.test/|alice-sub",
            "--reason", "left",
        )  # fmt: skip
        assert result.returncode == 1
        assert "has no grant in this store" in result.stderr

    def test_a_second_offboard_exits_1_and_says_the_grants_already_ended(self, config):
        first = _run(PHI_GRANTS, "-c", config, "offboard", "--subject", SUBJECT, "--reason", "left")
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("revoked g_") == 1
        again = _run(PHI_GRANTS, "-c", config, "offboard", "--subject", SUBJECT, "--reason", "left")
        assert again.returncode == 1
        assert again.stderr.startswith(
            f"phi-grants: {SUBJECT} has no unexpired grant (1 earlier grant(s) already ended"
        )
        assert again.stdout == ""

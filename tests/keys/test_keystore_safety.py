"""Review fixes: symlinked keystore, KEK folder fsync, no key after shred, audited key ids."""

from __future__ import annotations

import io
import json
import os

import pytest

from keys.cli import main
from keys.errors import KekError, KeyringError
from keys.kek import FileKek, generate_kek_file
from keys.keyring import KeyState
from keys.keystore import KeystoreFile

CONFIG = "keys: {keystore: ./keystore.json, kek: {provider: file, path: ./kek.b64}}\n"


class TestSymlinkedKeystore:
    def test_rotate_through_a_symlink_changes_the_real_file(self, tmp_path, store, kek):
        """Writes and the lock go to the link's target; the link stays a link."""
        store.add_practices(["p1"])
        etc = tmp_path / "etc"
        etc.mkdir()
        link = etc / "keystore.json"
        link.symlink_to(store.path)
        via_link = KeystoreFile(link, kek)
        assert via_link.path == store.path.resolve()
        rotated = via_link.rotate("p1")
        assert link.is_symlink()
        assert rotated.version == 2
        real = KeystoreFile(store.path, kek)
        assert [(i.version, i.state) for i in real.infos()] == [
            (1, KeyState.DECRYPT_ONLY),
            (2, KeyState.ACTIVE),
        ]
        assert real.infos() == via_link.infos()
        assert not list(etc.glob("*.lock"))  # one lock, beside the real file
        assert (tmp_path / "keystore.json.lock").exists()


class TestKekFolderFsync:
    def test_generate_kek_file_fsyncs_its_folder(self, tmp_path, monkeypatch):
        """The new KEK's directory entry is made durable: os.fsync is called on its folder."""
        folder = tmp_path / "newkek"
        folder.mkdir()
        synced: list[int] = []
        real_fsync = os.fsync

        def recording_fsync(fd):
            synced.append(os.fstat(fd).st_ino)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", recording_fsync)
        path = folder / "kek.b64"
        generate_kek_file(path)
        assert path.stat().st_ino in synced
        assert folder.stat().st_ino in synced
        assert synced.index(path.stat().st_ino) < synced.index(folder.stat().st_ino)

    def test_failed_folder_fsync_removes_the_kek_and_says_so(self, tmp_path, monkeypatch):
        """If the folder cannot be synced the half-durable KEK is removed: a retry is clean."""
        import keys.kek

        def broken(folder):
            raise OSError(5, "Input/output error")

        monkeypatch.setattr(keys.kek, "fsync_dir", broken)
        path = tmp_path / "kek.b64"
        with pytest.raises(KekError, match="durably"):
            generate_kek_file(path)
        assert not path.exists()


class TestNoKeyAfterShred:
    def test_rotate_all_skips_and_rotate_refuses_a_shredded_practice(self, store):
        """rotate_all leaves a shredded practice without a key; rotate says why and how."""
        store.add_practices(["p1", "p2"])
        store.shred("p2")
        before = store.infos()
        assert [(i.practice, i.version) for i in store.rotate_all()] == [("p1", 2)]
        assert [i for i in store.infos() if i.practice == "p2"] == [
            i for i in before if i.practice == "p2"
        ]
        with pytest.raises(KeyringError, match=r"shredded.*add-practice p2 --after-shred"):
            store.rotate("p2")
        with pytest.raises(KeyringError, match="shredded"):
            store.rotate("p2", only_if_active="0123456789abcdef")
        with pytest.raises(KeyringError, match="shredded"):
            store.add_practices(["p3", "p2"])
        assert "p3" not in {i.practice for i in store.infos()}  # all or nothing

    def test_after_shred_is_a_deliberate_fresh_start(self, store):
        """add_practices(after_shred=True) gives a new active key numbered after the old ones."""
        store.add_practices(["p1"])
        store.rotate("p1")
        store.shred("p1")
        (fresh,) = store.add_practices(["p1"], after_shred=True)
        assert (fresh.version, fresh.state) == (3, KeyState.ACTIVE)
        with pytest.raises(KeyringError, match="already has keys"):
            store.add_practices(["p1"], after_shred=True)  # live again: not a fresh start


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    """A config with a keystore holding p1 and p2, through the real `phi-keys` main()."""
    monkeypatch.delenv("PHI_PROXY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "proxy.yaml"
    config.write_text(CONFIG)
    assert main(["-c", str(config), "init", "--generate-kek", str(tmp_path / "kek.b64")]) == 0
    assert main(["-c", str(config), "add-practice", "p1", "p2"]) == 0
    return config


class TestCli:
    def test_rotate_all_after_shred_says_skipped(self, cli_env, capsys, monkeypatch):
        """`rotate --all` names the shredded practice it skipped; `rotate --practice` exits 1."""
        cfg = str(cli_env)
        assert main(["-c", cfg, "shred", "--practice", "p2", "--confirm", "p2"]) == 0
        capsys.readouterr()
        assert main(["-c", cfg, "rotate", "--all"]) == 0
        out = capsys.readouterr().out
        assert "rotated practice p1" in out
        assert "skipped practice p2: it was shredded" in out
        assert main(["-c", cfg, "rotate", "--practice", "p2"]) == 1
        assert "was shredded" in capsys.readouterr().err
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"900-11-2222\n")))
        assert main(["-c", cfg, "encrypt", "--practice", "p2", "--field", "ssn"]) == 1
        assert capsys.readouterr().out == ""  # no token: new writes stay refused

    def test_audit_of_retire_names_the_key_and_reason(self, cli_env, tmp_path):
        """`retire --force` and `rotate-kek` audit the key id, the reason and the new KEK's path."""
        cfg = str(cli_env)
        assert main(["-c", cfg, "rotate", "--practice", "p1"]) == 0
        store = KeystoreFile(tmp_path / "keystore.json", FileKek(tmp_path / "kek.b64"))
        old = next(i.kid for i in store.infos() if i.state is KeyState.DECRYPT_ONLY)
        retire = ["retire", "--key", old, "--force", "--reason", "ticket 4711"]
        assert main(["-c", cfg, *retire]) == 0
        new_kek = tmp_path / "kek2.b64"
        assert main(["-c", cfg, "rotate-kek", "--generate", "--new-kek", str(new_kek)]) == 0
        trail = [
            json.loads(line)
            for p in sorted(tmp_path.rglob("*.jsonl"))
            for line in p.read_text().splitlines()
        ]
        text = json.dumps(trail)
        (retire_ev,) = [e for e in trail if e.get("action") == "retire"]
        assert retire_ev["details"]["key"] == old
        assert retire_ev["details"]["reason"] == "ticket 4711"
        assert retire_ev["details"]["force"] is True
        assert str(new_kek) in text
        assert new_kek.read_text().strip() not in text  # the path only, never the material

"""`phi-keys retire`, `shred` and `rotate-kek`: the steps that cannot be taken back lightly."""

from __future__ import annotations

import json
import shutil

import pytest
from lifecycle_db import TestTable
from lifecycle_helpers import run_keys

from keys.errors import InvalidToken, KekError
from keys.kek import FileKek
from keys.keyring import KeyState
from keys.keystore import KeystoreFile


class TestRetire:
    def test_refuses_while_a_scanned_file_uses_the_key(self, env, store):
        """A dump still holding a token under the key blocks retire; after rewrap it passes."""
        folder, config, _ = env
        ring = store.load()
        old = ring.primary("practice-a").kid
        (folder / "dump.sql").write_text(f"('{ring.encrypt('practice-a', 'ssn', '1')}')\n")
        run_keys("rotate", "--practice", "practice-a", config=config, check=True)
        refused = run_keys("retire", "--key", old, "--scan", "dump.sql", config=config, cwd=folder)
        assert refused.returncode == 1
        assert "1 tokens still use key" in refused.stderr
        assert {i.kid: i.state for i in store.infos()}[old] is KeyState.DECRYPT_ONLY
        run_keys(
            "rewrap",
            "--in",
            "dump.sql",
            "--out",
            "dump2.sql",
            config=config,
            cwd=folder,
            check=True,
        )
        ok = run_keys("retire", "--key", old, "--scan", "dump2.sql", config=config, cwd=folder)
        assert ok.returncode == 0, ok.stderr
        assert {i.kid: i.state for i in store.infos()}[old] is KeyState.RETIRED
        with pytest.raises(InvalidToken):
            store.load().open((folder / "dump.sql").read_text()[2:-3])
        back = run_keys("unretire", "--key", old, config=config)
        assert back.returncode == 0, back.stderr
        assert {i.kid: i.state for i in store.infos()}[old] is KeyState.DECRYPT_ONLY
        assert store.load().open((folder / "dump.sql").read_text()[2:-3]).plaintext == "1"

    def test_refuses_while_a_table_uses_the_key(self, env, store, tmp_path):
        """The --dsn scan counts tokens in a live table, anywhere inside the values."""
        _folder, config, _ = env
        ring = store.load()
        old = ring.primary("practice-b").kid
        db = tmp_path / "t.db"
        TestTable("sqlite", db, "patients").create(
            [(1, "practice-b", None, None, "see " + ring.encrypt("practice-b", "history", "x"))]
        )
        run_keys("rotate", "--practice", "practice-b", config=config, check=True)
        refused = run_keys(
            "retire",
            "--key",
            old,
            "--dsn",
            f"sqlite:///{db}",
            "--table",
            "patients",
            "--columns",
            "ssn,history",
            config=config,
        )
        assert refused.returncode == 1, refused.stderr
        assert {i.kid: i.state for i in store.infos()}[old] is KeyState.DECRYPT_ONLY

    def test_needs_proof_or_a_forced_reason(self, env, store):
        """No scan and no --force is refused; --force needs --reason; the active key never."""
        _folder, config, _ = env
        active = store.load().primary("practice-c").kid
        run_keys("rotate", "--practice", "practice-c", config=config, check=True)
        assert run_keys("retire", "--key", active, config=config).returncode == 2
        assert run_keys("retire", "--key", active, "--force", config=config).returncode == 2
        forced = run_keys(
            "retire", "--key", active, "--force", "--reason", "dump verified by hand", config=config
        )
        assert forced.returncode == 0
        assert "dump verified by hand" in forced.stdout
        new_active = store.load().primary("practice-c").kid
        refused = run_keys("retire", "--key", new_active, "--force", "--reason", "x", config=config)
        assert refused.returncode == 1
        assert "rotate" in refused.stderr


class TestShred:
    def test_confirmation_must_repeat_the_practice(self, env, store):
        """A --confirm that differs from --practice destroys nothing."""
        _folder, config, _ = env
        done = run_keys(
            "shred", "--practice", "practice-a", "--confirm", "practice-b", config=config
        )
        assert done.returncode == 2
        assert all(i.state is KeyState.ACTIVE for i in store.infos())

    def test_material_is_gone_and_tokens_no_longer_open(self, env, store):
        """After shred the file holds no wrapped key for the practice; others are untouched."""
        _folder, config, _ = env
        ring = store.load()
        token_a = ring.encrypt("practice-a", "ssn", "123-45-6789")
        token_b = ring.encrypt("practice-b", "ssn", "987-65-4321")
        store.rotate("practice-a")
        done = run_keys(
            "shred", "--practice", "practice-a", "--confirm", "practice-a", config=config
        )
        assert done.returncode == 0, done.stderr
        assert "backups" in done.stdout
        doc = json.loads(store.path.read_text())
        mine = [k for k in doc["keys"] if k["practice"] == "practice-a"]
        assert len(mine) == 2
        assert all(k["wrapped"] is None and k["state"] == "destroyed" for k in mine)
        after = store.load()
        with pytest.raises(InvalidToken):
            after.open(token_a)
        assert after.practice_of(token_a.split(".")[2]) == "practice-a"
        assert after.open(token_b).plaintext == "987-65-4321"


class TestRotateKek:
    def test_new_kek_opens_the_file_and_the_old_kek_opens_the_backup(self, env, store):
        """One atomic rewrap: new KEK opens the keystore, old KEK only the .bak copy."""
        folder, config, _ = env
        ring = store.load()
        token = ring.encrypt("practice-a", "ssn", "123-45-6789")
        old_kek = FileKek(folder / "kek.b64")
        done = run_keys(
            "rotate-kek", "--generate", "--new-kek", "kek2.b64", config=config, cwd=folder
        )
        assert done.returncode == 0, done.stderr
        new = KeystoreFile(store.path, FileKek(folder / "kek2.b64"))
        assert new.load().open(token).plaintext == "123-45-6789"
        with pytest.raises(KekError):
            KeystoreFile(store.path, old_kek).load()
        backup = folder / f"keystore.json.bak-{old_kek.kek_id}"
        assert backup.stat().st_mode & 0o077 == 0
        assert KeystoreFile(backup, old_kek).load().open(token).plaintext == "123-45-6789"
        assert {i.kid for i in new.infos()} == {i.kid for i in ring.infos()}

    def test_same_kek_and_missing_kek_are_refused(self, env, store):
        """Rewrapping under the KEK in use, or a KEK file that is not there, changes nothing."""
        folder, config, _ = env
        before = store.path.read_bytes()
        shutil.copy(folder / "kek.b64", folder / "same.b64")
        (folder / "same.b64").chmod(0o600)
        assert (
            run_keys("rotate-kek", "--new-kek", "same.b64", config=config, cwd=folder).returncode
            == 1
        )
        assert (
            run_keys("rotate-kek", "--new-kek", "none.b64", config=config, cwd=folder).returncode
            == 1
        )
        assert store.path.read_bytes() == before

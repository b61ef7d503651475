"""Keystore file: rotation matrix, atomic writes, cross-process locking, and tamper detection."""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
import sys
import textwrap

import pytest
from keys_strategies import FIXED_NOW

from keys._keystore_doc import canonical_json
from keys.errors import InvalidToken, KekError, KeyringError, KeystoreError
from keys.kek import EnvKek, FileKek, generate_kek_file
from keys.keyring import KeyState
from keys.keystore import KeystoreFile
from keys.token_format import b64url_encode


def _doc(store):
    return json.loads(store.path.read_bytes())


def _write_doc(store, doc):
    store.path.write_text(json.dumps(doc, indent=2))


class TestCreateAndLoad:
    def test_new_keystore_is_0600_and_empty(self, store):
        """create() writes an empty, mode-0600 keystore bound to the KEK id."""
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        doc = _doc(store)
        assert (doc["format"], doc["version"], doc["keys"]) == ("phi-proxy-keystore", 1, [])
        assert doc["kek_id"] == store.kek_id
        assert store.load().practices() == frozenset()

    def test_create_refuses_to_overwrite(self, store):
        """create() on an existing file raises KeystoreError and leaves the bytes alone."""
        before = store.path.read_bytes()
        with pytest.raises(KeystoreError, match="refusing to overwrite"):
            store.create()
        assert store.path.read_bytes() == before

    def test_add_practices_and_load(self, store):
        """add_practices gives each practice an active v1 key that encrypts and decrypts."""
        infos = store.add_practices(["p1", "p2", "p1"])
        assert [(i.practice, i.version, i.state) for i in infos] == [
            ("p1", 1, KeyState.ACTIVE),
            ("p2", 1, KeyState.ACTIVE),
        ]
        assert all(i.created_at == FIXED_NOW for i in infos)
        ring = store.load()
        assert ring.open(ring.encrypt("p2", "ssn", "x")).practice == "p2"
        assert store.infos() == ring.infos()

    def test_add_existing_practice_refused_all_or_nothing(self, store):
        """Adding a practice that exists fails and adds none of the batch."""
        store.add_practices(["p1"])
        before = store.path.read_bytes()
        with pytest.raises(KeyringError, match="rotate --practice p1"):
            store.add_practices(["p9", "p1"])
        assert store.path.read_bytes() == before

    def test_invalid_practice_id_refused(self, store):
        """Practice ids outside the allowed grammar are refused before touching the file."""
        with pytest.raises(KeyringError, match="not a valid practice id"):
            store.add_practices(["bad id"])

    def test_file_never_contains_raw_dek(self, tmp_path, kek):
        """The file holds DEKs only wrapped: the raw bytes appear in no common encoding."""
        dek = bytes(range(100, 132))
        store = KeystoreFile(tmp_path / "ks.json", kek, token_bytes=lambda n: dek[:n])
        store.create()
        store.add_practices(["p1"])
        text = store.path.read_text()
        for encoded in (dek.hex(), b64url_encode(dek), b64url_encode(dek[:8])):
            assert encoded not in text
        assert store.load().primary("p1").kid == dek[:8].hex()


class TestRotationMatrix:
    def test_old_tokens_still_open_after_rotate(self, store):
        """Tokens made under v1 open after rotate; new tokens use v2; v1 is decrypt-only."""
        store.add_practices(["p1"])
        ring1 = store.load()
        v1_token = ring1.encrypt("p1", "ssn", "111")
        new = store.rotate("p1")
        ring2 = store.load()
        assert new.version == 2
        assert ring2.primary("p1") == new
        assert ring2.open(v1_token).plaintext == "111"
        assert ring2.open(ring2.encrypt("p1", "ssn", "222")).kid == new.kid
        states = {i.version: i.state for i in ring2.infos()}
        assert states == {1: KeyState.DECRYPT_ONLY, 2: KeyState.ACTIVE}

    def test_retired_refuses_and_can_be_unretired(self, store):
        """A retired version refuses its tokens; setting it back to decrypt-only restores them."""
        v1 = store.add_practices(["p1"])[0]
        token = store.load().encrypt("p1", "ssn", "111")
        store.rotate("p1")
        store.set_state(v1.kid, KeyState.RETIRED)
        with pytest.raises(InvalidToken):
            store.load().open(token)
        store.set_state(v1.kid, KeyState.DECRYPT_ONLY)
        assert store.load().open(token).plaintext == "111"

    def test_destroyed_is_gone_from_file(self, store):
        """Destroying a retired key removes its wrapped material from the file for good."""
        v1 = store.add_practices(["p1"])[0]
        token = store.load().encrypt("p1", "ssn", "111")
        store.rotate("p1")
        store.set_state(v1.kid, KeyState.RETIRED)
        wrapped_before = next(k["wrapped"] for k in _doc(store)["keys"] if k["kid"] == v1.kid)
        store.destroy(v1.kid)
        entry = next(k for k in _doc(store)["keys"] if k["kid"] == v1.kid)
        assert entry["state"] == "destroyed"
        assert entry["wrapped"] is None
        assert wrapped_before not in store.path.read_text()
        ring = store.load()
        with pytest.raises(InvalidToken):
            ring.open(token)
        assert ring.practice_of(v1.kid) == "p1"

    @pytest.mark.parametrize(
        ("state_of_v1", "operation", "message"),
        [
            ("active", lambda s, kid: s.set_state(kid, KeyState.RETIRED), "rotate"),
            ("active", lambda s, kid: s.destroy(kid), "only a retired key"),
            ("decrypt-only", lambda s, kid: s.destroy(kid), "only a retired key"),
            ("decrypt-only", lambda s, kid: s.set_state(kid, KeyState.ACTIVE), "directly"),
            ("decrypt-only", lambda s, _: s.set_state("0" * 16, KeyState.RETIRED), "no key"),
        ],
    )
    def test_unsafe_transitions_refused(self, store, state_of_v1, operation, message):
        """Retiring the primary, destroying a non-retired key, or re-activating are refused."""
        v1 = store.add_practices(["p1"])[0]
        if state_of_v1 == "decrypt-only":
            store.rotate("p1")
        before = store.path.read_bytes()
        with pytest.raises(KeyringError, match=message):
            operation(store, v1.kid)
        assert store.path.read_bytes() == before

    def test_rotate_all_and_unknown_practice(self, store):
        """rotate_all bumps every practice at once; rotating an unknown practice is refused."""
        store.add_practices(["p1", "p2"])
        assert [(i.practice, i.version) for i in store.rotate_all()] == [("p1", 2), ("p2", 2)]
        with pytest.raises(KeyringError, match="add-practice zz"):
            store.rotate("zz")


class TestAtomicWrite:
    def test_crash_before_rename_leaves_old_file(self, tmp_path, kek):
        """A failure between temp write and rename leaves the old bytes and no temp file."""
        path = tmp_path / "keystore.json"
        good = KeystoreFile(path, kek)
        good.create()
        good.add_practices(["p1"])
        before = path.read_bytes()

        def crash(src, dst):
            raise OSError(5, "simulated crash before rename")

        crashing = KeystoreFile(path, kek, replace=crash)
        with pytest.raises(KeystoreError, match="previous file is unchanged"):
            crashing.rotate("p1")
        assert path.read_bytes() == before
        assert sorted(p.name for p in tmp_path.iterdir()) == [
            "kek.b64",
            "keystore.json",
            "keystore.json.lock",
        ]
        assert good.load().primary("p1").version == 1

    def test_two_processes_rotating_at_once_both_land(self, store, kek_path):
        """Two real processes rotating the same practice concurrently lose no version."""
        store.add_practices(["p1"])
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from keys.kek import FileKek
            from keys.keystore import KeystoreFile
            store = KeystoreFile(Path({str(store.path)!r}), FileKek(Path({str(kek_path)!r})))
            for _ in range(12):
                store.rotate("p1")
            """
        )
        procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(2)]
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
        infos = store.infos()
        assert sorted(i.version for i in infos) == list(range(1, 26))
        assert [i.version for i in infos if i.state is KeyState.ACTIVE] == [25]
        assert len(store.load().infos()) == 25


class TestDamagedFiles:
    @pytest.fixture
    def filled(self, store):
        store.add_practices(["p1", "p2"])
        store.rotate("p1")
        return store

    def _assert_refused_unchanged(self, store, error, match, kek=None):
        before = store.path.read_bytes()
        reader = store if kek is None else KeystoreFile(store.path, kek)
        with pytest.raises(error, match=match) as caught:
            reader.load()
        assert str(store.path) in str(caught.value)
        with pytest.raises(error):
            reader.rotate("p1")
        assert store.path.read_bytes() == before

    def test_wrong_kek(self, filled, tmp_path):
        """Another KEK gives a KekError naming the file and 'wrong KEK file?'."""
        other = tmp_path / "other.b64"
        generate_kek_file(other)
        self._assert_refused_unchanged(filled, KekError, "wrong KEK file", FileKek(other))

    def test_state_edited_by_hand(self, filled):
        """Flipping a state in the file (decrypt-only → active) fails the integrity check."""
        doc = _doc(filled)
        doc["keys"][0]["state"] = "retired"
        _write_doc(filled, doc)
        self._assert_refused_unchanged(filled, KeystoreError, "integrity check failed")

    def test_moved_wrapped_dek_names_the_kid(self, filled):
        """A wrapped DEK swapped into another practice's entry names the file and the kid."""
        doc = _doc(filled)
        p2 = next(k for k in doc["keys"] if k["practice"] == "p2")
        p1 = next(k for k in doc["keys"] if k["practice"] == "p1")
        p2["wrapped"] = p1["wrapped"]
        _write_doc(filled, doc)
        self._assert_refused_unchanged(filled, KeystoreError, f"key {p2['kid']} does not open")

    def test_moved_wrapped_dek_detected_even_with_valid_seal(self, filled, kek):
        """Even if a tool re-seals the file with the KEK, the per-key AAD catches a moved DEK."""
        doc = _doc(filled)
        p2 = next(k for k in doc["keys"] if k["practice"] == "p2")
        p2["wrapped"] = next(k for k in doc["keys"] if k["practice"] == "p1")["wrapped"]
        digest = hashlib.sha256(canonical_json(doc)).digest()
        doc["integrity"] = b64url_encode(kek.wrap(digest, b"phi-proxy keystore v1 integrity"))
        _write_doc(filled, doc)
        before = filled.path.read_bytes()
        with pytest.raises(KeystoreError, match=f"key {p2['kid']} does not open"):
            filled.load()
        assert filled.infos()  # facts are intact; only the material is refused
        assert filled.path.read_bytes() == before

    @pytest.mark.parametrize("cut", [1, 10, 200])
    def test_truncated(self, filled, cut):
        """A truncated file is 'not valid JSON (truncated or corrupted?)'."""
        filled.path.write_bytes(filled.path.read_bytes()[:cut])
        self._assert_refused_unchanged(filled, KeystoreError, "truncated or corrupted")

    @pytest.mark.parametrize(
        ("content", "match"),
        [
            ('{"hello": "world"}', "not a phi-proxy keystore"),
            ("[1, 2, 3]", "not a phi-proxy keystore"),
            ('{"format": "phi-proxy-keystore", "version": 2}', "version 2 is not supported"),
            ('{"format": "phi-proxy-keystore", "version": 1, "keys": 3}', "malformed"),
            ("\xff\xfe", "truncated or corrupted"),
        ],
    )
    def test_foreign_or_unsupported(self, filled, content, match):
        """Foreign JSON, other versions and junk give a KeystoreError naming the problem."""
        filled.path.write_bytes(content.encode("latin-1"))
        self._assert_refused_unchanged(filled, KeystoreError, match)

    def test_missing_file(self, tmp_path, kek):
        """A missing keystore says so and suggests `phi-keys init`."""
        with pytest.raises(KeystoreError, match="phi-keys init"):
            KeystoreFile(tmp_path / "nope.json", kek).load()

    def test_env_kek_opens_file_made_with_same_key(self, filled, kek_path):
        """The same KEK given through an env variable opens the keystore (providers agree)."""
        material = kek_path.read_text().strip()
        env_store = KeystoreFile(filled.path, EnvKek("K", environ={"K": material}))
        assert env_store.load().practices() == frozenset({"p1", "p2"})

"""The keyed hash chain and its verification: edits, deletions, reorders, rotation, keys."""

from __future__ import annotations

import threading

import orjson
import pytest
from audit_helpers import lines_of, settings_in, write_events
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.audit import AuditError, FileSink, open_chain, trail_files, verify_files
from proxy.audit.chain import canonical, mac_of
from proxy.audit.secrets import ChainKey, load_chain_key


@pytest.fixture
def trail(tmp_path):
    settings = settings_in(tmp_path)
    write_events(settings, 6)
    return settings


def verify(settings, files=None):
    return verify_files(
        files or trail_files(settings.path), key=load_chain_key(settings), head_of=settings.path
    )


class TestVerify:
    def test_an_untouched_trail_verifies(self, trail):
        """Seven lines (genesis + six events) verify with the key, seq 1..7."""
        result = verify(trail)
        assert result.problem is None
        assert (result.first_seq, result.last_seq, result.events) == (1, 7, 7)

    def test_an_edited_event_is_named_by_its_line(self, trail):
        """Changing one field of line 4 fails the MAC of exactly that line."""
        lines = lines_of(trail.path)
        event = orjson.loads(lines[3])
        event["action"] = "revoke"
        lines[3] = orjson.dumps(event, option=orjson.OPT_SORT_KEYS) + b"\n"
        trail.path.write_bytes(b"".join(lines))
        problem = verify(trail).problem
        assert problem is not None
        assert (problem.file, problem.line) == (trail.path, 4)
        assert "MAC does not match" in problem.message

    def test_a_deleted_event_is_named_by_the_line_after_the_gap(self, trail):
        """Removing line 3 reports line 3 (now seq 4) with seq 3 missing."""
        lines = lines_of(trail.path)
        del lines[2]
        trail.path.write_bytes(b"".join(lines))
        problem = verify(trail).problem
        assert problem is not None
        assert problem.line == 3
        assert "events 3..3 are missing" in problem.message

    def test_reordered_events_are_named(self, trail):
        """Swapping lines 4 and 5 fails at line 4."""
        lines = lines_of(trail.path)
        lines[3], lines[4] = lines[4], lines[3]
        trail.path.write_bytes(b"".join(lines))
        problem = verify(trail).problem
        assert problem is not None
        assert problem.line == 4

    def test_a_recomputed_mac_with_another_key_is_refused(self, trail):
        """An attacker without the audit key cannot rewrite an event and re-seal it."""
        lines = lines_of(trail.path)
        forged = orjson.loads(lines[2])
        forged["action"] = "forged"
        body = {k: v for k, v in forged.items() if k != "mac"}
        forged["mac"] = mac_of(ChainKey(b"k" * 32), body)
        lines[2] = canonical(forged) + b"\n"
        trail.path.write_bytes(b"".join(lines))
        problem = verify(trail).problem
        assert problem is not None
        assert problem.line == 3

    def test_deleting_the_first_line_of_a_file_is_detected(self, trail):
        """A file that does not open with its genesis event lost its first lines."""
        trail.path.write_bytes(b"".join(lines_of(trail.path)[1:]))
        problem = verify(trail).problem
        assert problem is not None
        assert problem.line == 1
        assert "genesis" in problem.message

    def test_truncating_the_end_is_detected_from_the_head_file(self, trail):
        """Dropping the last two lines leaves the trail behind the recorded head."""
        trail.path.write_bytes(b"".join(lines_of(trail.path)[:-2]))
        problem = verify(trail).problem
        assert problem is not None
        assert "truncated" in problem.message

    def test_garbage_line_is_named(self, trail):
        """A line that is not JSON is reported at its number."""
        lines = lines_of(trail.path)
        lines.insert(2, b"hello\n")
        trail.path.write_bytes(b"".join(lines))
        problem = verify(trail).problem
        assert problem is not None
        assert problem.line == 3
        assert "not valid JSON" in problem.message


class TestRotation:
    def test_a_rotated_trail_verifies_across_the_rotation(self, trail):
        """After renaming the file away, the next events start a file continuing the chain."""
        trail.path.rename(trail.path.with_name("audit.jsonl.1"))
        write_events(trail, 3, start=6)
        files = trail_files(trail.path)
        assert [f.name for f in files] == ["audit.jsonl.1", "audit.jsonl"]
        result = verify(trail)
        assert result.problem is None
        assert result.last_seq == 11  # 7 + genesis + 3
        first_new = orjson.loads(lines_of(trail.path)[0])
        assert first_new["type"] == "genesis"
        assert first_new["continues"] is True
        assert first_new["previous_seq"] == 7

    def test_a_missing_rotated_file_in_the_middle_is_reported(self, trail):
        """Verifying the first and third file without the second names the gap."""
        trail.path.rename(trail.path.with_name("audit.jsonl.2"))
        write_events(trail, 2, start=6)
        trail.path.rename(trail.path.with_name("audit.jsonl.1"))
        write_events(trail, 2, start=8)
        files = [trail.path.with_name("audit.jsonl.2"), trail.path]
        problem = verify(trail, files).problem
        assert problem is not None
        assert problem.file == trail.path
        assert problem.line == 1
        assert "missing" in problem.message

    def test_the_newer_file_alone_verifies_with_a_note(self, trail):
        """Given only the current file, the chain is checked from its genesis on, noted."""
        trail.path.rename(trail.path.with_name("audit.jsonl.1"))
        write_events(trail, 2, start=6)
        result = verify_files([trail.path], key=load_chain_key(trail))
        assert result.problem is None
        assert any("not given" in note for note in result.notes)


def _signing_key_file(path):
    """A fresh Ed25519 checkpoint-signing key written as PKCS#8 PEM to `path`; the key."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)  # a signing key others may read is refused
    return private


class TestCheckpoints:
    def test_signed_checkpoints_verify_with_the_public_key_alone(self, tmp_path):
        """Every N events a checkpoint is signed; an auditor needs only the public key."""
        private = _signing_key_file(tmp_path / "sign.pem")
        settings = settings_in(tmp_path, signing_key_file="sign.pem", checkpoint_every=3)
        write_events(settings, 5)
        result = verify_files([settings.path], key=None, public_key=private.public_key())
        assert result.problem is None
        assert result.checkpoints == result.signatures_checked == 2

    def test_a_forged_checkpoint_signature_is_refused(self, tmp_path):
        """A checkpoint signed by another key fails even without the audit key."""
        _signing_key_file(tmp_path / "sign.pem")
        settings = settings_in(tmp_path, signing_key_file="sign.pem", checkpoint_every=2)
        write_events(settings, 2)
        other = Ed25519PrivateKey.generate().public_key()
        problem = verify_files([settings.path], key=None, public_key=other).problem
        assert problem is not None
        assert "signature" in problem.message


class TestFileSink:
    def test_concurrent_writers_share_one_chain(self, tmp_path):
        """Eight threads with their own file handles append 25 events each: one valid chain."""
        settings = settings_in(tmp_path)
        chain = open_chain(settings)

        def writer(n):
            sink = FileSink(settings.path, fsync=False)
            for i in range(25):
                sink.append(
                    chain,
                    [{"type": "proxy", "ts": "t", "w": n, "i": i}],
                    ts="t",
                    force_checkpoint=False,
                )

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        result = verify(settings)
        assert result.problem is None
        assert result.events == 201

    def test_the_audit_file_is_private(self, trail):
        """The trail and its head file are created mode 0600."""
        assert trail.path.stat().st_mode & 0o777 == 0o600
        assert trail.path.with_name("audit.jsonl.head").stat().st_mode & 0o777 == 0o600


class TestKeys:
    def test_a_missing_key_next_to_an_existing_trail_is_refused(self, trail):
        """Deleting the key does not silently start a new one: the operator must restore it."""
        trail.key_file.unlink()
        with pytest.raises(AuditError, match="restore the key"):
            load_chain_key(trail)

    def test_the_key_file_is_created_private(self, tmp_path):
        """A brand-new trail gets a 0600 key of 32 random bytes."""
        settings = settings_in(tmp_path)
        key = load_chain_key(settings)
        assert settings.key_file.stat().st_mode & 0o777 == 0o600
        assert repr(key) == "ChainKey([secure])"

    def test_the_key_can_come_from_the_environment(self, tmp_path, monkeypatch):
        """key_env takes the key from a variable; an unset variable is a clear error."""
        settings = settings_in(tmp_path, key_env="PHI_TEST_AUDIT_KEY")
        with pytest.raises(AuditError, match="not set"):
            load_chain_key(settings)
        import base64

        monkeypatch.setenv("PHI_TEST_AUDIT_KEY", base64.b64encode(b"z" * 32).decode())
        assert load_chain_key(settings).reveal_for_hmac() == b"z" * 32

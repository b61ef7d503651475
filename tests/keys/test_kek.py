"""KEK providers: file permissions, formats, env variable, wrap/unwrap and fingerprints."""

from __future__ import annotations

import base64
import hashlib
import os
import stat

import pytest

from keys.errors import KekError
from keys.kek import EnvKek, FileKek, KekProvider, generate_kek_file

MATERIAL = bytes(range(32))
B64 = base64.b64encode(MATERIAL).decode()


def _write(path, text, mode=0o600):
    path.write_text(text)
    path.chmod(mode)
    return path


class TestFileKek:
    def test_generated_file_is_0600_and_loads(self, tmp_path):
        """generate_kek_file writes mode 0600 base64 + newline, and FileKek loads it."""
        path = tmp_path / "kek.b64"
        kek_id = generate_kek_file(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().endswith("\n")
        assert len(base64.b64decode(path.read_text().strip(), validate=True)) == 32
        assert FileKek(path).kek_id == kek_id

    def test_generate_refuses_to_overwrite(self, kek_path):
        """An existing KEK file is never overwritten; its bytes stay the same."""
        before = kek_path.read_bytes()
        with pytest.raises(KekError, match="refusing to overwrite"):
            generate_kek_file(kek_path)
        assert kek_path.read_bytes() == before

    @pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o602])
    def test_group_or_world_access_refused(self, tmp_path, mode):
        """A KEK file readable or writable by group/others is refused with the chmod fix."""
        path = _write(tmp_path / "kek.b64", B64 + "\n", mode)
        with pytest.raises(KekError, match=f"chmod 600 {path}"):
            FileKek(path)

    @pytest.mark.parametrize("mode", [0o600, 0o400])
    def test_owner_only_modes_accepted(self, tmp_path, mode):
        """Owner-only files (0600, 0400) load."""
        assert FileKek(_write(tmp_path / "kek.b64", B64 + "\n", mode)).kek_id

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("not base64!!\n", "not valid base64"),
            (base64.b64encode(b"short").decode() + "\n", "decodes to 5 bytes"),
            ("", "decodes to 0 bytes"),
        ],
    )
    def test_bad_content_refused_without_echo(self, tmp_path, text, message):
        """Malformed KEK files give a clear error that never echoes the file's content."""
        path = _write(tmp_path / "kek.b64", text)
        with pytest.raises(KekError, match=message) as caught:
            FileKek(path)
        assert text.strip() == "" or text.strip() not in str(caught.value)

    def test_missing_file_names_path_and_fix(self, tmp_path):
        """A missing KEK file names the path and how to create one."""
        with pytest.raises(KekError, match="--generate-kek"):
            FileKek(tmp_path / "absent.b64")

    def test_symlink_refused(self, tmp_path, kek_path):
        """A symlink in place of the KEK file is not followed."""
        link = tmp_path / "link.b64"
        link.symlink_to(kek_path)
        with pytest.raises(KekError):
            FileKek(link)


class TestEnvKek:
    def test_loads_from_named_variable(self):
        """EnvKek reads base64 from the named variable and matches a FileKek of the same key."""
        kek = EnvKek("MY_KEK", environ={"MY_KEK": B64})
        assert kek.source == "env:MY_KEK"
        assert len(kek.kek_id) == 16

    @pytest.mark.parametrize("environ", [{}, {"MY_KEK": ""}])
    def test_missing_variable_refused(self, environ):
        """An unset or empty variable names the variable and what it must hold."""
        with pytest.raises(KekError, match="MY_KEK is not set"):
            EnvKek("MY_KEK", environ=environ)

    def test_real_environment_is_default(self, monkeypatch):
        """Without an explicit mapping EnvKek reads os.environ."""
        monkeypatch.setenv("PHI_TEST_KEK", B64)
        assert EnvKek("PHI_TEST_KEK").kek_id == EnvKek("X", environ={"X": B64}).kek_id


class TestWrap:
    def test_wrap_unwrap_round_trip_and_aad_binding(self):
        """Unwrap returns the secret only with the same AAD and the same KEK."""
        kek = EnvKek("K", environ={"K": B64})
        other = EnvKek("K", environ={"K": base64.b64encode(os.urandom(32)).decode()})
        wrapped = kek.wrap(b"secret", b"aad-1")
        assert kek.unwrap(wrapped, b"aad-1") == b"secret"
        with pytest.raises(KekError, match="wrong KEK file"):
            kek.unwrap(wrapped, b"aad-2")
        with pytest.raises(KekError, match="wrong KEK file"):
            other.unwrap(wrapped, b"aad-1")
        with pytest.raises(KekError):
            kek.unwrap(b"short", b"aad-1")

    def test_kek_id_is_stable_and_not_a_plain_hash(self, tmp_path):
        """kek_id depends only on the key, and is not a prefix of SHA-256 of the raw KEK."""
        path = _write(tmp_path / "kek.b64", B64 + "\n")
        kek = FileKek(path)
        assert kek.kek_id == EnvKek("K", environ={"K": B64}).kek_id
        assert kek.kek_id != hashlib.sha256(MATERIAL).hexdigest()[:16]
        assert isinstance(kek, KekProvider)

    def test_repr_shows_no_material(self, tmp_path):
        """The provider's repr names its source and id, never the key."""
        kek = FileKek(_write(tmp_path / "kek.b64", B64 + "\n"))
        assert B64 not in repr(kek)
        assert MATERIAL.hex() not in repr(kek)
        assert "kek_id=" in repr(kek)

"""The `keys:` config section: validation, path resolution, providers, open_keyring."""

from __future__ import annotations

import base64

import pytest

from keys.config_file import load_section
from keys.errors import ConfigError, KekError
from keys.kek import EnvKek, FileKek
from keys.settings import (
    EnvKekSettings,
    FileKekSettings,
    KeySettings,
    kek_provider,
    keystore_file,
    open_keyring,
)


def _config(tmp_path, body):
    path = tmp_path / "conf" / "proxy.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(body)
    return path


class TestKeySettings:
    def test_relative_paths_resolve_against_config_folder(self, tmp_path):
        """The keystore and kek.path are resolved relative to the config file, not the cwd."""
        path = _config(
            tmp_path,
            "keys:\n  keystore: ./ks.json\n  kek:\n    provider: file\n    path: kek.b64\n",
        )
        settings = load_section(path, "keys", KeySettings)
        assert settings.keystore == tmp_path / "conf" / "ks.json"
        assert isinstance(settings.kek, FileKekSettings)
        assert settings.kek.path == tmp_path / "conf" / "kek.b64"

    def test_env_provider_defaults_variable(self, tmp_path):
        """provider: env uses PHI_PROXY_KEK unless env_var names another variable."""
        path = _config(tmp_path, "keys:\n  keystore: /x/ks.json\n  kek:\n    provider: env\n")
        settings = load_section(path, "keys", KeySettings)
        assert isinstance(settings.kek, EnvKekSettings)
        assert settings.kek.env_var == "PHI_PROXY_KEK"

    @pytest.mark.parametrize(
        ("body", "where"),
        [
            ("keys:\n  kek:\n    provider: env\n", "keys.keystore"),
            ("keys:\n  keystore: k\n  kek:\n    provider: kms\n", "keys.kek"),
            ("keys:\n  keystore: k\n  kek:\n    provider: file\n", "keys.kek.file.path"),
            ("keys:\n  keystore: k\n  kek: {provider: env, path: x}\n", "keys.kek.env.path"),
            ("keys:\n  keystore: k\n  typo: 1\n  kek: {provider: env}\n", "keys.typo"),
            ("other: 1\n", "keys.keystore"),
        ],
    )
    def test_errors_name_the_yaml_path(self, tmp_path, body, where):
        """Invalid sections raise ConfigError naming the dotted YAML path."""
        with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
            load_section(_config(tmp_path, body), "keys", KeySettings)

    def test_settings_are_frozen(self):
        """Validated settings cannot be changed afterwards."""
        settings = KeySettings.model_validate(
            {"keystore": "/k.json", "kek": {"provider": "env", "env_var": "K"}}
        )
        with pytest.raises(ValueError, match="frozen"):
            settings.keystore = "/other"  # type: ignore[misc]

    def test_every_field_is_described(self):
        """Each settings field has a description (the editor JSON Schema is built from them)."""
        for model in (KeySettings, FileKekSettings, EnvKekSettings):
            for name, field in model.model_fields.items():
                assert field.description, f"{model.__name__}.{name}"


class TestOpenKeyring:
    def test_file_provider_end_to_end(self, store, kek_path):
        """open_keyring loads the configured KEK file and keystore into a working Keyring."""
        store.add_practices(["p1"])
        settings = KeySettings.model_validate(
            {"keystore": str(store.path), "kek": {"provider": "file", "path": str(kek_path)}}
        )
        assert isinstance(kek_provider(settings.kek), FileKek)
        assert keystore_file(settings).path == store.path
        ring = open_keyring(settings)
        assert ring.open(ring.encrypt("p1", "ssn", "x")).plaintext == "x"

    def test_env_provider(self, store, kek_path, monkeypatch):
        """provider: env reads the KEK from the named variable; unset gives a KekError."""
        settings = KeySettings.model_validate(
            {"keystore": str(store.path), "kek": {"provider": "env", "env_var": "PHI_T_KEK"}}
        )
        monkeypatch.delenv("PHI_T_KEK", raising=False)
        with pytest.raises(KekError, match="PHI_T_KEK"):
            open_keyring(settings)
        monkeypatch.setenv("PHI_T_KEK", kek_path.read_text().strip())
        assert isinstance(kek_provider(settings.kek), EnvKek)
        assert open_keyring(settings).practices() == frozenset()
        assert len(base64.b64decode(kek_path.read_text().strip())) == 32

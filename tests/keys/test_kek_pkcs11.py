"""The PKCS#11 KEK against a real SoftHSM2 token: key attributes, binding, failures, re-opening."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess

import pytest
from kek_backends import PIN_ENV, extra_token, pkcs11_config

from keys._pkcs11_token import Pin
from keys.errors import ConfigError, KekError, KekUnavailable
from keys.keystore import KeystoreFile
from keys.settings import KeySettings, check_kek, kek_provider

AAD = b"phi-proxy keystore v1\x000123456789abcdef\x00p1\x001"


def _kek(token, label, pin=None):
    from keys.kek_pkcs11 import Pkcs11Kek

    pin = pin or Pin(token.pin, source="test")
    return Pkcs11Kek(module=token.module, token_label=token.label, key_label=label, pin=pin)


class TestGeneratedKey:
    def test_key_is_aes256_sensitive_and_never_extractable(self, softhsm, pkcs11_kek):
        """The generated key is AES-256, sensitive, never extractable; its value cannot be read."""
        import pkcs11

        config, _ = pkcs11_kek
        lib = pkcs11.lib(str(softhsm.module))  # the provider's own (module is a real path)
        session = lib.get_token(token_label=softhsm.label).open()  # the process is logged in
        try:
            key = session.get_key(label=config["key_label"])
            attribute = pkcs11.Attribute
            assert key[attribute.KEY_TYPE] == pkcs11.KeyType.AES
            assert key[attribute.VALUE_LEN] == 32
            assert key[attribute.SENSITIVE]
            assert key[attribute.ALWAYS_SENSITIVE]
            assert not key[attribute.EXTRACTABLE]
            assert key[attribute.NEVER_EXTRACTABLE]
            assert key[attribute.TOKEN]
            assert key[attribute.PRIVATE]
            assert not key[attribute.WRAP]
            assert not key[attribute.SIGN]
            with pytest.raises(pkcs11.AttributeSensitive):
                key[attribute.VALUE]
        finally:
            session.close()

    def test_generate_refuses_a_label_already_in_use(self, softhsm, pkcs11_kek):
        """A second key with the same label is refused: the existing one may hold a keystore."""
        from keys.kek_pkcs11 import generate_pkcs11_kek

        config, kek = pkcs11_kek
        with pytest.raises(KekUnavailable, match="already holds a key labelled"):
            generate_pkcs11_kek(
                module=softhsm.module,
                token_label=softhsm.label,
                key_label=config["key_label"],
                pin=Pin(softhsm.pin, source="test"),
            )
        assert _kek(softhsm, config["key_label"]).kek_id == kek.kek_id

    def test_kek_id_follows_the_key_object_not_the_config(self, softhsm, pkcs11_kek):
        """Same key → same kek_id in a new provider; another key in the token → another id."""
        config, kek = pkcs11_kek
        from keys.kek_pkcs11 import generate_pkcs11_kek

        assert _kek(softhsm, config["key_label"]).kek_id == kek.kek_id
        other = f"other-{secrets.token_hex(3)}"
        generate_pkcs11_kek(
            module=softhsm.module,
            token_label=softhsm.label,
            key_label=other,
            pin=Pin(softhsm.pin, source="t"),
        )
        assert _kek(softhsm, other).kek_id != kek.kek_id
        assert len(kek.kek_id) == 16


class TestWrapInsideTheToken:
    def test_round_trip(self, pkcs11_kek):
        """wrap/unwrap through the token gives the secret back; nonce ‖ ct ‖ tag shape."""
        _, kek = pkcs11_kek
        secret = secrets.token_bytes(32)
        wrapped = kek.wrap(secret, AAD)
        assert len(wrapped) == 12 + 32 + 16
        assert kek.unwrap(wrapped, AAD) == secret
        assert kek.wrap(secret, AAD) != wrapped  # fresh nonce every time

    @pytest.mark.parametrize(
        "other_aad",
        [
            b"phi-proxy keystore v1\x000123456789abcdef\x00p2\x001",  # another practice
            b"phi-proxy keystore v1\x00fedcba9876543210\x00p1\x001",  # another kid
            b"phi-proxy keystore v1\x000123456789abcdef\x00p1\x002",  # another version
        ],
    )
    def test_other_associated_data_does_not_open(self, pkcs11_kek, other_aad):
        """The AAD is bound inside the token: another practice, kid or version is a KekError."""
        _, kek = pkcs11_kek
        wrapped = kek.wrap(secrets.token_bytes(32), AAD)
        with pytest.raises(KekError) as caught:
            kek.unwrap(wrapped, other_aad)
        assert not isinstance(caught.value, KekUnavailable)

    @pytest.mark.parametrize("flip", [0, 12, -1])
    def test_altered_or_short_data_does_not_open(self, pkcs11_kek, flip):
        """A flipped nonce, ciphertext or tag byte, or a too-short blob, is a KekError."""
        _, kek = pkcs11_kek
        wrapped = bytearray(kek.wrap(secrets.token_bytes(32), AAD))
        wrapped[flip] ^= 1
        with pytest.raises(KekError):
            kek.unwrap(bytes(wrapped), AAD)
        with pytest.raises(KekError):
            kek.unwrap(b"short", AAD)

    def test_another_key_does_not_open(self, softhsm, pkcs11_kek):
        """A DEK wrapped under one token key does not open under another."""
        from keys.kek_pkcs11 import generate_pkcs11_kek

        _, kek = pkcs11_kek
        label = f"k-{secrets.token_hex(3)}"
        generate_pkcs11_kek(
            module=softhsm.module,
            token_label=softhsm.label,
            key_label=label,
            pin=Pin(softhsm.pin, source="t"),
        )
        with pytest.raises(KekError):
            _kek(softhsm, label).unwrap(kek.wrap(b"x" * 32, AAD), AAD)

    def test_keystore_round_trip_through_the_token(self, tmp_path, pkcs11_kek):
        """A keystore made with the token's KEK loads in a new provider and opens its tokens."""
        config, kek = pkcs11_kek
        store = KeystoreFile(tmp_path / "keystore.json", kek)
        store.create()
        store.add_practices(["p1", "p2"])
        store.rotate("p1")
        ring = store.load()
        token = ring.encrypt("p1", "ssn", "123-45-6789")
        again = KeystoreFile(tmp_path / "keystore.json", kek_provider(_settings(config).kek))
        assert again.load().open(token).plaintext == "123-45-6789"


def _settings(kek_config):
    return KeySettings.model_validate({"keystore": "/nonexistent", "kek": kek_config})


class TestFailures:
    def test_wrong_pin_is_one_clear_error_and_never_retried(self, softhsm):
        """A wrong PIN names its source; the same PIN is not tried again (tokens lock PINs)."""
        token = extra_token(softhsm, "pin", pin="1234")
        wrong = Pin("9999", source="env:PHI_PROXY_PKCS11_PIN")
        with pytest.raises(KekUnavailable, match="refused the PIN from env:PHI_PROXY_PKCS11_PIN"):
            _kek(token, "any", wrong)
        with pytest.raises(KekUnavailable, match="earlier in this process") as caught:
            _kek(token, "any", wrong)
        assert "9999" not in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_missing_token_names_the_tokens_present(self, softhsm):
        """A token label that is not there lists the labels that are."""
        with pytest.raises(KekUnavailable, match=f"no token labelled 'absent'.*'{softhsm.label}'"):
            _kek(dataclasses.replace(softhsm, label="absent"), "k")

    def test_missing_key_says_how_to_create_it(self, softhsm):
        """A key label the token does not hold points to `phi-keys init --kek-provider pkcs11`."""
        with pytest.raises(KekUnavailable, match=r"no AES key labelled 'absent'.*--kek-provider"):
            _kek(softhsm, "absent")

    def test_missing_module(self, tmp_path):
        """A module path that does not exist says to install the library or fix the path."""
        from keys.kek_pkcs11 import Pkcs11Kek

        with pytest.raises(KekUnavailable, match=r"keys\.kek\.module .*No such file"):
            Pkcs11Kek(
                module=tmp_path / "absent.so",
                token_label="t",
                key_label="k",
                pin=Pin("1", source="t"),
            )

    def test_module_others_can_write_is_refused(self, softhsm, tmp_path):
        """A library group or others can write is refused: its code would run with the keys."""
        from keys.kek_pkcs11 import Pkcs11Kek

        copy = tmp_path / "libsofthsm2.so"
        shutil.copy(softhsm.module, copy)
        copy.chmod(0o666)
        with pytest.raises(KekUnavailable, match="writable by group or others"):
            Pkcs11Kek(
                module=copy, token_label=softhsm.label, key_label="k", pin=Pin("1", source="t")
            )

    def test_missing_python_pkcs11_names_the_extra(self, monkeypatch, softhsm):
        """Without python-pkcs11 the error names `pip install 'phi-proxy[pkcs11]'`."""
        import keys._pkcs11_token as token_module

        monkeypatch.setattr(token_module, "pkcs11", None)
        with pytest.raises(KekUnavailable, match=r"phi-proxy\[pkcs11\]"):
            _kek(softhsm, "k")

    def test_removed_token_is_unavailable_then_back(self, softhsm):
        """A pulled token is KekUnavailable (not "does not open"), and is used again once back."""
        from keys.kek_pkcs11 import generate_pkcs11_kek

        token = extra_token(softhsm, "rm")
        pin = Pin(token.pin, source="t")
        generate_pkcs11_kek(module=token.module, token_label=token.label, key_label="kek", pin=pin)
        kek = _kek(token, "kek")
        wrapped = kek.wrap(b"s" * 32, AAD)
        away = token.directory.parent.parent / f"{token.directory.name}.away"  # off tokendir
        token.directory.rename(away)
        try:
            with pytest.raises(KekUnavailable, match="no token labelled"):
                kek.check()
            with pytest.raises(KekUnavailable):
                kek.unwrap(wrapped, AAD)
        finally:
            away.rename(token.directory)
        kek.check()
        assert kek.unwrap(wrapped, AAD) == b"s" * 32

    def test_one_login_per_token_per_process(self, pkcs11_kek):
        """Providers (and reloads) naming the same token share its one session."""
        config, kek = pkcs11_kek
        again = kek_provider(_settings(config).kek)
        assert again._token is kek._token
        session = kek._token._session
        again.unwrap(kek.wrap(b"x" * 32, AAD), AAD)
        assert kek._token._session is session

    def test_dropped_session_is_reopened(self, pkcs11_kek):
        """A session the token dropped (HSM restart) is re-opened and the operation retried."""
        _, kek = pkcs11_kek
        wrapped = kek.wrap(b"k" * 32, AAD)
        kek._token._session.close()  # behind the provider's back
        assert kek.unwrap(wrapped, AAD) == b"k" * 32


class TestSettings:
    def test_pin_in_the_yaml_is_refused(self):
        """`pin:` in keys.kek is refused with where the PIN goes instead."""
        from pydantic import ValidationError

        config = {"provider": "pkcs11", "module": "/m.so", "token_label": "t", "key_label": "k"}
        with pytest.raises(ValidationError, match="must not be in the config file: set pin_env"):
            _settings(config | {"pin": "1234"})
        with pytest.raises(ValidationError, match="not both"):
            _settings(config | {"pin_env": "X", "pin_file": "/p"})

    def test_pin_from_a_0600_file_and_loose_file_refused(self, softhsm, pkcs11_kek, tmp_path):
        """pin_file works at mode 0600 and is refused when group or others can read it."""
        config, kek = pkcs11_kek
        pin_file = tmp_path / "pin"
        pin_file.write_text(softhsm.pin + "\n")
        pin_file.chmod(0o600)
        from_file = {k: v for k, v in config.items() if k != "pin_env"} | {
            "pin_file": str(pin_file)
        }
        assert kek_provider(_settings(from_file).kek).kek_id == kek.kek_id
        pin_file.chmod(0o644)
        with pytest.raises(KekError, match="chmod 600"):
            kek_provider(_settings(from_file).kek)

    def test_unset_pin_variable_says_what_to_set(self, pkcs11_kek, monkeypatch):
        """An empty or unset PIN variable is one line naming the variable and the token."""
        config, _ = pkcs11_kek
        monkeypatch.delenv(PIN_ENV)
        with pytest.raises(KekError, match=f"env:{PIN_ENV} is empty or not set"):
            kek_provider(_settings(config).kek)

    def test_check_kek_passes_then_fails_closed(self, softhsm, monkeypatch):
        """check_kek is quiet while the token works and KekUnavailable once it is gone."""
        from keys.kek_pkcs11 import generate_pkcs11_kek

        token = extra_token(softhsm, "ck")
        monkeypatch.setenv(PIN_ENV, token.pin)
        pin = Pin(token.pin, source="t")
        generate_pkcs11_kek(module=token.module, token_label=token.label, key_label="kek", pin=pin)
        settings = _settings(pkcs11_config(token, "kek"))
        check_kek(settings.kek)
        subprocess.run(
            ["softhsm2-util", "--delete-token", "--token", token.label],
            env={"SOFTHSM2_CONF": str(token.conf), "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
        )
        with pytest.raises(KekUnavailable):
            check_kek(settings.kek)

    def test_config_error_type_is_not_used_for_device_failures(self):
        """Device failures are KekUnavailable (operational, exit 1), never ConfigError (2)."""
        assert not issubclass(KekUnavailable, ConfigError)

"""The public surface of the keys package and its test helper."""

from __future__ import annotations

import keys
from keys.keyring import KeyState
from keys.testing import make_keyring


class TestPublicApi:
    def test_exported_names_are_exactly_the_intended_ones(self):
        """`keys.__all__` lists the supported API and nothing private (no _aead, no ciphers)."""
        assert set(keys.__all__) == {
            "TOKEN_PATTERN",
            "TOKEN_PATTERN_BYTES",
            "TOKEN_PREFIX",
            "TOKEN_PREFIX_BYTES",
            "ConfigError",
            "EnvKek",
            "FileKek",
            "InvalidToken",
            "KekError",
            "KekProvider",
            "KekUnavailable",
            "KeyInfo",
            "KeySettings",
            "KeyState",
            "Keyring",
            "KeyringError",
            "KeystoreError",
            "KeystoreFile",
            "OpenedToken",
            "PhiProxyError",
            "generate_kek_file",
            "open_keyring",
        }
        assert all(hasattr(keys, name) for name in keys.__all__)

    def test_key_state_values_are_the_stored_strings(self):
        """KeyState values are the strings written to the keystore file."""
        assert [s.value for s in KeyState] == ["active", "decrypt-only", "retired", "destroyed"]


class TestMakeKeyring:
    def test_one_active_key_per_practice(self):
        """make_keyring gives each distinct practice one active v1 key with a random kid."""
        ring = make_keyring(["a", "b", "a"])
        assert ring.practices() == frozenset({"a", "b"})
        assert {(i.version, i.state) for i in ring.infos()} == {(1, KeyState.ACTIVE)}
        assert ring.primary("a").kid != make_keyring(["a"]).primary("a").kid
        assert ring.open(ring.encrypt("b", "ssn", "v")).practice == "b"

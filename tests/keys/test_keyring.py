"""Keyring: round trips, tamper detection, deterministic mode, states and invariants."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from keys_strategies import field_classes, plaintexts

from keys._aead import TokenCipher
from keys.errors import InvalidToken, KeyringError
from keys.keyring import KeyInfo, Keyring, KeyState, OpenedToken
from keys.testing import make_keyring
from keys.token_format import TOKEN_PATTERN

NOW = datetime(2025, 1, 1, tzinfo=UTC)
NAIVE = datetime(2025, 1, 1)  # noqa: DTZ001 - deliberately naive, to be refused
KEYRING = make_keyring(["p1", "p2"])


def _info(kid, practice="p1", version=1, state=KeyState.ACTIVE):
    return KeyInfo(kid, practice, version, state, NOW)


class TestRoundTrip:
    @given(plaintexts, field_classes, st.booleans())
    def test_any_unicode_round_trips(self, plaintext, field_class, deterministic):
        """Any Unicode text (including empty) decrypts to itself, in both modes."""
        token = KEYRING.encrypt("p1", field_class, plaintext, deterministic=deterministic)
        opened = KEYRING.open(token)
        assert opened.plaintext == plaintext
        assert opened.field_class == field_class
        assert opened.practice == "p1"
        assert TOKEN_PATTERN.fullmatch(token)

    @pytest.mark.parametrize("deterministic", [False, True])
    def test_64_kib_value_round_trips(self, deterministic):
        """A 64 KiB value (e.g. a long medical history) round-trips."""
        value = ("Ω history line\n" * 5000)[: 64 * 1024]
        token = KEYRING.encrypt("p2", "history", value, deterministic=deterministic)
        assert KEYRING.open(token).plaintext == value

    def test_random_mode_uses_fresh_nonces(self):
        """Encrypting the same value twice in GCM mode gives different tokens."""
        assert KEYRING.encrypt("p1", "ssn", "1") != KEYRING.encrypt("p1", "ssn", "1")


class TestTamper:
    @settings(max_examples=60)
    @given(st.data(), st.booleans())
    def test_any_single_bit_flip_is_refused(self, data, deterministic):
        """Flipping any one bit of any character of a token makes open() raise InvalidToken."""
        token = KEYRING.encrypt("p1", "ssn", "123-45-6789", deterministic=deterministic)
        raw = bytearray(token.encode("latin-1"))
        index = data.draw(st.integers(0, len(raw) - 1))
        bit = data.draw(st.integers(0, 7))
        raw[index] ^= 1 << bit
        with pytest.raises(InvalidToken):
            KEYRING.open(raw.decode("latin-1"))

    def test_exhaustive_bit_flips_of_one_token(self):
        """Every single-bit change of one GCM token, position by position, is refused."""
        token = KEYRING.encrypt("p2", "insurance_id", "AB-1")
        raw = token.encode("latin-1")
        for index in range(len(raw)):
            for bit in range(8):
                flipped = bytearray(raw)
                flipped[index] ^= 1 << bit
                with pytest.raises(InvalidToken):
                    KEYRING.open(flipped.decode("latin-1"))

    def test_token_of_other_keyring_is_refused(self):
        """A well-formed token under a kid this keyring does not know raises InvalidToken."""
        with pytest.raises(InvalidToken):
            KEYRING.open(make_keyring(["p1"]).encrypt("p1", "ssn", "x"))

    @pytest.mark.parametrize("value", [None, 17, b"phi1.r.", "ünïcode"])
    def test_non_token_inputs_refused(self, value):
        """Values that are not tokens at all raise InvalidToken, never another error."""
        with pytest.raises(InvalidToken):
            KEYRING.open(value)  # type: ignore[arg-type]


class TestDeterministic:
    @given(plaintexts)
    def test_same_key_class_value_same_token(self, plaintext):
        """SIV mode is deterministic per (key, class, value)."""
        first = KEYRING.encrypt("p1", "ssn", plaintext, deterministic=True)
        assert first == KEYRING.encrypt("p1", "ssn", plaintext, deterministic=True)

    @given(plaintexts)
    def test_differs_across_practices_and_classes(self, plaintext):
        """The same value gives different payloads under another practice or another class."""
        base = KEYRING.encrypt("p1", "ssn", plaintext, deterministic=True)
        other_practice = KEYRING.encrypt("p2", "ssn", plaintext, deterministic=True)
        other_class = KEYRING.encrypt("p1", "member_id", plaintext, deterministic=True)
        payloads = {t.rpartition(".")[2] for t in (base, other_practice, other_class)}
        assert len(payloads) == 3


class TestStates:
    def _ring(self, state):
        old, new = os.urandom(32), os.urandom(32)
        active = Keyring.from_material(
            [
                (_info("a" * 16, version=1), old),
                (_info("b" * 16, version=2, state=KeyState.DECRYPT_ONLY), new),
            ]
        )
        token = active.encrypt("p1", "ssn", "v")
        material = None if state is KeyState.DESTROYED else old
        later = Keyring.from_material(
            [
                (_info("a" * 16, version=1, state=state), material),
                (_info("c" * 16, version=3), os.urandom(32)),
            ]
        )
        return token, later

    @pytest.mark.parametrize("state", [KeyState.DECRYPT_ONLY])
    def test_decrypt_only_still_decrypts(self, state):
        """A token under a DECRYPT_ONLY key still opens."""
        token, ring = self._ring(state)
        assert ring.open(token).plaintext == "v"

    @pytest.mark.parametrize("state", [KeyState.RETIRED, KeyState.DESTROYED])
    def test_retired_and_destroyed_refuse_but_stay_known(self, state):
        """RETIRED/DESTROYED keys refuse decryption but practice_of still names the practice."""
        token, ring = self._ring(state)
        with pytest.raises(InvalidToken):
            ring.open(token)
        assert ring.practice_of("a" * 16) == "p1"
        assert ring.diagnose(token) == f"key-{state.value}"

    def test_new_tokens_use_primary(self):
        """Encrypt always uses the single ACTIVE key of the practice."""
        _, ring = self._ring(KeyState.DECRYPT_ONLY)
        assert ring.primary("p1").kid == "c" * 16
        assert ring.open(ring.encrypt("p1", "ssn", "x")).kid == "c" * 16

    def test_practice_without_active_key_cannot_encrypt(self):
        """A practice with only DECRYPT_ONLY keys has no primary: KeyringError, operator text."""
        ring = Keyring.from_material(
            [(_info("a" * 16, state=KeyState.DECRYPT_ONLY), os.urandom(32))]
        )
        with pytest.raises(KeyringError, match="no active key"):
            ring.encrypt("p1", "ssn", "x")
        with pytest.raises(KeyringError, match="no active key"):
            ring.primary("nope")


class TestInvariants:
    @pytest.mark.parametrize(
        ("entries", "message"),
        [
            (
                [
                    (_info("a" * 16), b"x" * 32),
                    (_info("a" * 16, version=2, state=KeyState.DECRYPT_ONLY), b"y" * 32),
                ],
                "twice",
            ),
            (
                [(_info("a" * 16), b"x" * 32), (_info("b" * 16, version=2), b"y" * 32)],
                "more than one active",
            ),
            ([(_info("a" * 16), b"x" * 32), (_info("b" * 16), b"y" * 32)], "version 1"),
            ([(_info("a" * 16), None)], "32 bytes"),
            ([(_info("a" * 16), b"short")], "32 bytes"),
            ([(_info("a" * 16, state=KeyState.DESTROYED), b"x" * 32)], "destroyed"),
            ([(_info("A" * 16), b"x" * 32)], "16 lowercase hex"),
            ([(KeyInfo("a" * 16, "p 1", 1, KeyState.ACTIVE, NOW), b"x" * 32)], "practice id"),
            ([(KeyInfo("a" * 16, "p1", 0, KeyState.ACTIVE, NOW), b"x" * 32)], "version"),
            (
                [(KeyInfo("a" * 16, "p1", 1, KeyState.ACTIVE, NAIVE), b"x" * 32)],
                "time zone",
            ),
        ],
    )
    def test_inconsistent_material_refused(self, entries, message):
        """from_material refuses duplicate kids/versions, two actives, bad material, bad ids."""
        with pytest.raises(KeyringError, match=message):
            Keyring.from_material(entries)

    def test_bad_field_class_refused_on_encrypt(self):
        """Encrypting with a field class outside the grammar is a KeyringError."""
        with pytest.raises(KeyringError, match="field class"):
            KEYRING.encrypt("p1", "SSN", "x")


class TestIntrospection:
    def test_owns_is_header_only_and_practice_bound(self):
        """owns() says whether the token names one of the practice's keys; junk is False."""
        token = KEYRING.encrypt("p1", "ssn", "x")
        assert KEYRING.owns("p1", token)
        assert not KEYRING.owns("p2", token)
        assert not KEYRING.owns("p1", "not a token")

    def test_practices_infos_and_practice_of(self):
        """practices(), infos() and practice_of() describe the ring without material."""
        assert KEYRING.practices() == frozenset({"p1", "p2"})
        assert [i.practice for i in KEYRING.infos()] == ["p1", "p2"]
        assert KEYRING.practice_of(KEYRING.primary("p2").kid) == "p2"
        assert KEYRING.practice_of("0" * 16) is None

    def test_reprs_never_show_material_or_plaintext(self):
        """Keyring, cipher and OpenedToken reprs show no key bytes and no plaintext."""
        dek = bytes(range(32))
        ring = Keyring.from_material([(_info("a" * 16), dek)])
        opened = ring.open(ring.encrypt("p1", "ssn", "123-45-6789"))
        text = repr(ring) + repr(TokenCipher(dek)) + repr(opened) + repr(ring.infos())
        assert "123-45-6789" not in text
        assert dek.hex() not in text
        assert repr(dek) not in text
        assert isinstance(opened, OpenedToken)
        assert opened.plaintext == "123-45-6789"

    def test_diagnose_ok_for_good_token(self):
        """diagnose() says "ok" for a token that opens."""
        assert KEYRING.diagnose(KEYRING.encrypt("p1", "ssn", "x")) == "ok"

"""Known-answer and negative vectors for token format v1 (tests/keys/vectors/token_v1.json)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys.errors import InvalidToken
from keys.keyring import KeyInfo, Keyring, KeyState

VECTORS = json.loads((Path(__file__).parent / "vectors" / "token_v1.json").read_text("utf-8"))
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]


def _keyring() -> Keyring:
    info = KeyInfo(
        VECTORS["kid"], VECTORS["practice"], 1, KeyState.ACTIVE, datetime(2025, 1, 1, tzinfo=UTC)
    )
    return Keyring.from_material([(info, bytes.fromhex(VECTORS["dek_hex"]))])


def _hkdf(length: int, info: str) -> bytes:
    dek = bytes.fromhex(VECTORS["dek_hex"])
    return HKDF(hashes.SHA256(), length, None, info.encode()).derive(dek)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _by_hand(vector: dict) -> str:
    """Build the token straight from cryptography and the stdlib, not from keys/."""
    header = f"phi1.{vector['mode']}.{VECTORS['kid']}.{vector['field_class']}."
    data = vector["plaintext"].encode("utf-8")
    if vector["mode"] == "r":
        nonce = bytes.fromhex(vector["nonce_hex"])
        aead = AESGCM(_hkdf(32, VECTORS["gcm_key_info"]))
        payload = nonce + aead.encrypt(nonce, data, header.encode())
    else:
        payload = AESSIV(_hkdf(64, VECTORS["siv_key_info"])).encrypt(data, [header.encode()])
    return header + _b64url(payload)


class TestKnownAnswers:
    def test_vector_set_covers_both_modes_and_empty_values(self):
        """The committed vectors include GCM and SIV tokens and an empty plaintext."""
        assert {v["mode"] for v in VALID} == {"r", "d"}
        assert any(v["plaintext"] == "" for v in VALID)

    @pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
    def test_vector_matches_independent_construction(self, vector):
        """Each committed token equals one built by hand with cryptography's HKDF/AESGCM/AESSIV."""
        assert vector["token"] == _by_hand(vector)

    @pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
    def test_implementation_reproduces_vector(self, vector):
        """The keyring, given the vector's nonce, produces exactly the committed token."""
        nonce = None if vector["nonce_hex"] is None else bytes.fromhex(vector["nonce_hex"])
        token = _keyring()._encrypt_with_nonce(
            VECTORS["practice"], vector["field_class"], vector["plaintext"], nonce=nonce
        )
        assert vector["token"] == token

    @pytest.mark.parametrize("vector", VALID, ids=[v["name"] for v in VALID])
    def test_vector_opens_to_plaintext(self, vector):
        """Each committed token opens to its plaintext, class, kid and practice."""
        opened = _keyring().open(vector["token"])
        assert (opened.plaintext, opened.field_class, opened.kid, opened.practice) == (
            vector["plaintext"],
            vector["field_class"],
            VECTORS["kid"],
            VECTORS["practice"],
        )

    def test_deterministic_public_api_matches_vector(self):
        """encrypt(deterministic=True) gives the committed SIV token (no nonce involved)."""
        vector = next(v for v in VALID if v["name"] == "siv-ssn")
        token = _keyring().encrypt(
            VECTORS["practice"], vector["field_class"], vector["plaintext"], deterministic=True
        )
        assert vector["token"] == token


class TestNegativeVectors:
    def test_required_cases_present(self):
        """The negative set has every case the issue lists (truncation, base64, version, bits…)."""
        names = {v["name"] for v in INVALID}
        assert {
            "truncated-payload",
            "bad-base64-char",
            "non-canonical-base64",
            "wrong-version",
            "flipped-bit-in-class",
            "flipped-bit-in-payload",
            "unknown-kid",
        } <= names

    @pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
    def test_invalid_token_raises_bare_invalid_token(self, vector):
        """Every negative vector raises InvalidToken with no message and no chained cause."""
        with pytest.raises(InvalidToken) as caught:
            _keyring().open(vector["token"])
        assert caught.value.args == ()
        assert caught.value.__cause__ is None

    @pytest.mark.parametrize("vector", INVALID, ids=[v["name"] for v in INVALID])
    def test_diagnose_gives_stable_reason_code(self, vector):
        """diagnose() returns the committed log-safe reason code, never the token itself."""
        reason = _keyring().diagnose(vector["token"])
        assert vector["reason_code"] == reason
        assert vector["token"] not in reason or vector["token"] == ""

    def test_non_canonical_payload_would_decode_leniently(self):
        """The non-canonical vector differs only in unused bits: a lax decoder would accept it."""
        vector = next(v for v in INVALID if v["name"] == "non-canonical-base64")
        payload = vector["token"].rpartition(".")[2]
        lenient = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        original = next(v for v in VALID if v["name"] == "gcm-nine-bytes")["token"]
        assert _b64url(lenient) == original.rpartition(".")[2]

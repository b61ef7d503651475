"""The dangerous part: the only module that touches cryptography's AEAD classes.

Everything here is easy to misuse, which is why nothing outside `keys/` imports it and why
callers go through `Keyring` (tokens) or a `KekProvider` (key wrapping) instead:

- a GCM nonce must never repeat under one key: `seal_random` takes the nonce only so the
  known-answer tests can pin it; `Keyring` always passes 12 fresh bytes from the OS;
- a DEK or KEK is never used directly as a cipher key: each purpose gets its own HKDF-SHA256
  subkey with a distinct `info` string (domain separation), derived once when the key is loaded;
- every failure to open (`InvalidTag`, bad length) becomes the bare `InvalidToken`, so callers
  cannot learn why.

Cipher objects are built once per key and reused; `open_*` does no derivation per call.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from keys.errors import InvalidToken

__all__ = [
    "DEK_BYTES",
    "GCM_INFO",
    "KEK_BYTES",
    "KEK_ID_INFO",
    "KEK_WRAP_INFO",
    "NONCE_BYTES",
    "SIV_INFO",
    "KeyWrapCipher",
    "TokenCipher",
    "hkdf_sha256",
    "kek_fingerprint",
]

DEK_BYTES: Final = 32
KEK_BYTES: Final = 32
NONCE_BYTES: Final = 12
GCM_INFO: Final = b"phi-proxy token v1 aes-256-gcm"
SIV_INFO: Final = b"phi-proxy token v1 aes-256-siv"
KEK_WRAP_INFO: Final = b"phi-proxy kek v1 aes-256-gcm wrap"
KEK_ID_INFO: Final = b"phi-proxy kek v1 id"


def hkdf_sha256(secret: bytes, *, length: int, info: bytes) -> bytes:
    """HKDF-SHA256 with no salt (the inputs are already uniformly random keys)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


class TokenCipher:
    """The two prepared ciphers of one DEK: AES-256-GCM (mode r) and AES-256-SIV (mode d)."""

    __slots__ = ("_gcm", "_siv")

    def __init__(self, dek: bytes) -> None:
        if len(dek) != DEK_BYTES:
            msg = "a data key must be exactly 32 bytes"
            raise ValueError(msg)
        self._gcm = AESGCM(hkdf_sha256(dek, length=32, info=GCM_INFO))
        self._siv = AESSIV(hkdf_sha256(dek, length=64, info=SIV_INFO))

    def __repr__(self) -> str:
        return "<TokenCipher [secure]>"

    def seal_random(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return nonce ‖ ciphertext ‖ tag. The nonce MUST be fresh random bytes in production."""
        if len(nonce) != NONCE_BYTES:
            msg = "a GCM nonce must be exactly 12 bytes"
            raise ValueError(msg)
        return nonce + self._gcm.encrypt(nonce, plaintext, aad)

    def seal_deterministic(self, plaintext: bytes, aad: bytes) -> bytes:
        """Return synthetic-IV(16) ‖ ciphertext; equal inputs give equal output by design."""
        return self._siv.encrypt(plaintext, [aad])

    def open_random(self, payload: bytes, aad: bytes) -> bytes:
        """Open nonce ‖ ciphertext ‖ tag, or raise bare InvalidToken."""
        try:
            return self._gcm.decrypt(payload[:NONCE_BYTES], payload[NONCE_BYTES:], aad)
        except (InvalidTag, ValueError):
            raise InvalidToken from None

    def open_deterministic(self, payload: bytes, aad: bytes) -> bytes:
        """Open synthetic-IV ‖ ciphertext, or raise bare InvalidToken."""
        try:
            return self._siv.decrypt(payload, [aad])
        except (InvalidTag, ValueError):
            raise InvalidToken from None


class KeyWrapCipher:
    """AES-256-GCM under a subkey of a KEK, for wrapping DEKs and the keystore's integrity seal.

    Output layout: nonce(12) ‖ ciphertext ‖ tag(16). Used by the software KEK providers; an HSM
    or KMS provider would do the same job inside the device and never come here.
    """

    __slots__ = ("_gcm",)

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEK_BYTES:
            msg = "a key-encryption key must be exactly 32 bytes"
            raise ValueError(msg)
        self._gcm = AESGCM(hkdf_sha256(kek, length=32, info=KEK_WRAP_INFO))

    def __repr__(self) -> str:
        return "<KeyWrapCipher [secure]>"

    def wrap(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt under a fresh random nonce supplied by the caller."""
        if len(nonce) != NONCE_BYTES:
            msg = "a GCM nonce must be exactly 12 bytes"
            raise ValueError(msg)
        return nonce + self._gcm.encrypt(nonce, plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Decrypt, or raise bare InvalidToken (callers translate it into a KekError)."""
        if len(wrapped) < NONCE_BYTES + 16:
            raise InvalidToken
        try:
            return self._gcm.decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], aad)
        except InvalidTag:
            raise InvalidToken from None


def kek_fingerprint(kek: bytes) -> str:
    """A non-secret id for a KEK: 16 hex of SHA-256 over an HKDF-derived id key.

    Never a hash of the raw KEK: the fingerprint is derived through its own HKDF domain, so it
    reveals nothing usable about the wrapping subkey.
    """
    return hashlib.sha256(hkdf_sha256(kek, length=32, info=KEK_ID_INFO)).hexdigest()[:16]

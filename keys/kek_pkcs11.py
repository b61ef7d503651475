"""A KEK that never leaves a PKCS#11 token (an HSM, or SoftHSM2 for tests and labs).

`Pkcs11Kek` wraps each DEK with CKM_AES_GCM *inside the token*, under a non-extractable,
sensitive AES-256 key: the process hands the token a DEK, a fresh random 96-bit nonce and the
keystore's associated data (kid, practice, version), and gets back ciphertext and tag. So the
binding of a wrapped DEK to its entry is the same as with a software KEK, and the output has the
same shape (nonce ‖ ciphertext ‖ tag). The KEK's value never exists outside the device.

- `kek_id` is a fingerprint of the key object's CKA_ID (random, set by `generate_pkcs11_kek`;
  the label when a key has none), so a config that names another key is reported as the wrong
  KEK before anything is unwrapped. A copy of the key in a second HSM keeps its CKA_ID and id.
- `check()` wraps and unwraps a random probe: the proxy runs it on every watch tick, so a
  pulled token or a changed PIN stops decryption (fail closed) within `keys.watch_interval`.
- The session, re-opening and PIN rules live in keys._pkcs11_token (one session per token per
  process).

The token must accept a caller-supplied IV for CKM_AES_GCM (SoftHSM2 and most HSMs do; some in
FIPS mode insist on making the IV themselves, which this provider does not support yet).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from typing import TYPE_CHECKING, Final

from keys._aead import NONCE_BYTES
from keys._pkcs11_token import KeyFacts, Pin, token_for
from keys._secret_file import read_private_file
from keys.errors import KekError, KekUnavailable

try:
    import pkcs11
except ImportError:  # the optional extra is missing: token_for says which one to install
    pkcs11 = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["Pkcs11Kek", "generate_pkcs11_kek", "read_pin"]

_TAG_BYTES: Final = 16
_PROBE_AAD: Final = b"phi-proxy kek probe v1"
_ID_DOMAIN: Final = b"phi-proxy kek id v1 pkcs11\0"


def read_pin(*, pin_env: str | None, pin_file: Path | None, token_label: str) -> Pin:
    """The user PIN from the named environment variable or owner-only file (KekError if not)."""
    if pin_file is not None:
        raw = read_private_file(
            pin_file,
            what="PIN file",
            missing_hint="check keys.kek.pin_file in the config",
            limit=256,
        )
        try:
            value = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError:
            raise KekError(f"{pin_file}: the PIN file is not UTF-8 text") from None
        source = str(pin_file)
    else:
        name = pin_env or "PHI_PROXY_PKCS11_PIN"
        value = os.environ.get(name, "")
        source = f"env:{name}"
    if not value:
        raise KekError(
            f"{source} is empty or not set; it must hold the user PIN of token "
            f"{token_label!r} (keys.kek.pin_env or keys.kek.pin_file names where it is)"
        )
    return Pin(value, source=source)


def generate_pkcs11_kek(
    *,
    module: Path,
    token_label: str,
    key_label: str,
    pin: Pin,
    token_bytes: Callable[[int], bytes] = secrets.token_bytes,
) -> str:
    """Create the KEK in the token (AES-256, sensitive, never extractable); returns its kek_id.

    Refuses a label the token already uses: that key may be wrapping a keystore now.
    """
    facts = token_for(str(module), token_label).generate_key(pin, key_label, token_bytes(16))
    return _fingerprint(facts)


class Pkcs11Kek:
    """KEK provider backed by an AES-256 key inside a PKCS#11 token; see the module docstring."""

    __slots__ = ("_kek_id", "_key_label", "_pin", "_random_bytes", "_token")

    def __init__(
        self,
        *,
        module: Path,
        token_label: str,
        key_label: str,
        pin: Pin,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._token = token_for(str(module), token_label)
        self._key_label = key_label
        self._pin = pin
        self._random_bytes = random_bytes
        # Opens the module and logs in now: a missing module, token or key, or a wrong PIN,
        # is reported when the config is loaded, not at the first unwrap.
        self._kek_id = _fingerprint(self._token.facts(pin, key_label))

    def __repr__(self) -> str:
        return f"<Pkcs11Kek {self.source} kek_id={self._kek_id}>"

    @property
    def kek_id(self) -> str:
        """Non-secret fingerprint of the key object (16 hex chars)."""
        return self._kek_id

    @property
    def source(self) -> str:
        """`key 'LABEL' in token 'LABEL' (MODULE)`, for messages."""
        return f"key {self._key_label!r} in {self._token.where}"

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM inside the token with a fresh random nonce: nonce ‖ ciphertext ‖ tag."""
        nonce = self._random_bytes(NONCE_BYTES)
        try:
            sealed = self._token.call(
                self._pin, self._key_label, _gcm(nonce, aad, plaintext, encrypt=True)
            )
        except pkcs11.PKCS11Error as exc:
            raise KekUnavailable(
                f"{self.source} refused to encrypt ({type(exc).__name__}); check that the key "
                "allows CKA_ENCRYPT and the token supports CKM_AES_GCM with a given IV"
            ) from None
        return nonce + sealed

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Open a wrapped secret; KekError if this key did not wrap it with this AAD."""
        if len(wrapped) < NONCE_BYTES + _TAG_BYTES:
            raise KekError(f"{self.source}: the KEK does not open this keystore: wrong KEK?")
        nonce, sealed = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return self._token.call(
                self._pin, self._key_label, _gcm(nonce, aad, sealed, encrypt=False)
            )
        except pkcs11.PKCS11Error:  # the token answers but will not open it: wrong key or data
            raise KekError(
                f"{self.source}: the KEK does not open this keystore: wrong KEK?"
            ) from None

    def check(self) -> None:
        """Wrap and unwrap a random probe in the token now (KekUnavailable if it cannot)."""
        probe = self._random_bytes(32)
        try:
            opened = self.unwrap(self.wrap(probe, _PROBE_AAD), _PROBE_AAD)
        except KekUnavailable:
            raise
        except KekError:
            opened = b""
        if not hmac.compare_digest(opened, probe):
            raise KekUnavailable(f"{self.source}: the token no longer opens what it wraps")


def _gcm(
    nonce: bytes, aad: bytes, data: bytes, *, encrypt: bool
) -> Callable[[pkcs11.SecretKey], bytes]:
    """One CKM_AES_GCM operation (128-bit tag) on the token's key, for Pkcs11Token.call."""
    params = pkcs11.GCMParams(nonce, aad, 128)

    def run(key: pkcs11.SecretKey) -> bytes:
        mechanism = pkcs11.Mechanism.AES_GCM
        result: bytes | object = None
        if encrypt and isinstance(key, pkcs11.EncryptMixin):
            result = key.encrypt(data, mechanism=mechanism, mechanism_param=params)
        elif not encrypt and isinstance(key, pkcs11.DecryptMixin):
            result = key.decrypt(data, mechanism=mechanism, mechanism_param=params)
        if not isinstance(result, bytes):  # a key object without the capability, or a stream
            raise pkcs11.FunctionFailed
        return result

    return run


def _fingerprint(facts: KeyFacts) -> str:
    """16 hex of SHA-256 over the key object's CKA_ID (or its label when it has none)."""
    ident = facts.object_id or facts.label.encode()
    return hashlib.sha256(_ID_DOMAIN + ident).hexdigest()[:16]

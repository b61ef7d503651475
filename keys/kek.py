"""Key-encryption key (KEK) providers: where the key that wraps every practice's DEK lives.

One small interface, `KekProvider`: a non-secret `kek_id` plus `wrap`/`unwrap` of short
secrets with associated data. The keystore needs nothing more, so a KEK inside a device does the
wrapping there without changing callers: `keys.kek_pkcs11` (an HSM through PKCS#11) and
`keys.kek_aws_kms` (AWS KMS), each also a `CheckedKek` the running proxy can ask whether it
still works.

Two software providers live here:
- `FileKek`: a file holding base64 of 32 random bytes and a newline. It refuses a file that
  group or others can read or write: a KEK anyone on the host can copy protects nothing.
- `EnvKek`: the same base64 in a named environment variable (containers, secret managers).

`generate_kek_file` creates a new KEK file with mode 0600 and never overwrites one.
"""

from __future__ import annotations

import binascii
import os
import secrets
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

from keys._aead import KEK_BYTES, NONCE_BYTES, KeyWrapCipher, kek_fingerprint
from keys._file_ops import fsync_dir
from keys._secret_file import read_private_file
from keys.errors import InvalidToken, KekError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

__all__ = [
    "CheckedKek",
    "EnvKek",
    "FileKek",
    "KekProvider",
    "SoftwareKek",
    "generate_kek_file",
]

_WRONG_KEK: Final = "the KEK does not open this keystore: wrong KEK file?"


@runtime_checkable
class KekProvider(Protocol):
    """What the keystore needs from a KEK: an id to check against, and wrap/unwrap.

    `unwrap` raises KekError when the data does not open under this KEK (wrong KEK or tampered
    data); it never says more than that.
    """

    @property
    def kek_id(self) -> str:
        """Non-secret fingerprint of the KEK, recorded in the keystore to catch a KEK mix-up."""
        ...

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate `plaintext` bound to `aad`."""
        ...

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Reverse `wrap`, or raise KekError."""
        ...


@runtime_checkable
class CheckedKek(KekProvider, Protocol):
    """A KEK in a device or service that can stop working while the proxy runs (HSM, KMS).

    `check` proves it still works now, or raises KekUnavailable; the proxy asks every watch
    tick and masks everything while it fails. Software KEKs have nothing to ask.
    """

    def check(self) -> None:
        """Wrap and unwrap through the device or service now (KekUnavailable if not)."""
        ...


class SoftwareKek:
    """A KEK held in this process's memory (shared core of FileKek and EnvKek)."""

    __slots__ = ("_cipher", "_kek_id", "_random_bytes", "_source")

    def __init__(
        self,
        material: bytes,
        *,
        source: str,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if len(material) != KEK_BYTES:
            raise KekError(f"{source}: a KEK must be exactly 32 bytes")
        self._cipher = KeyWrapCipher(material)
        self._kek_id = kek_fingerprint(material)
        self._source = source
        self._random_bytes = random_bytes

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._source} kek_id={self._kek_id}>"

    @property
    def kek_id(self) -> str:
        """Non-secret fingerprint (16 hex chars)."""
        return self._kek_id

    @property
    def source(self) -> str:
        """Where the KEK came from (a file path or `env:NAME`), for error messages."""
        return self._source

    def wrap(self, plaintext: bytes, aad: bytes) -> bytes:
        """AES-256-GCM under a KEK subkey with a fresh random nonce."""
        return self._cipher.wrap(self._random_bytes(NONCE_BYTES), plaintext, aad)

    def unwrap(self, wrapped: bytes, aad: bytes) -> bytes:
        """Open a wrapped secret; KekError if it was not wrapped by this KEK with this AAD."""
        try:
            return self._cipher.unwrap(wrapped, aad)
        except InvalidToken:
            raise KekError(f"{self._source}: {_WRONG_KEK}") from None


def _decode_kek(text: str, *, source: str) -> bytes:
    """Standard base64 of exactly 32 bytes, surrounding whitespace ignored; never echoes input."""
    try:
        material = binascii.a2b_base64(text.strip().encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        raise KekError(
            f"{source}: not valid base64; a KEK is base64 of 32 random bytes "
            "(create one with `phi-keys init --generate-kek PATH`)"
        ) from None
    if len(material) != KEK_BYTES:
        raise KekError(f"{source}: decodes to {len(material)} bytes; a KEK must be 32 bytes")
    return material


class FileKek(SoftwareKek):
    """A KEK read from a file that only its owner may read or write (mode 0600 or 0400)."""

    __slots__ = ()

    def __init__(self, path: Path, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        source = str(path)
        raw = read_private_file(
            path,
            what="KEK file",
            missing_hint="check keys.kek.path in the config, or create one with "
            "`phi-keys init --generate-kek PATH`",
        )
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KekError(f"{source}: not a KEK file (expected one line of base64)") from None
        super().__init__(_decode_kek(text, source=source), source=source, random_bytes=random_bytes)


class EnvKek(SoftwareKek):
    """A KEK read from an environment variable holding base64 of 32 bytes."""

    __slots__ = ()

    def __init__(
        self,
        var_name: str,
        *,
        environ: Mapping[str, str] | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        source = f"env:{var_name}"
        value = (os.environ if environ is None else environ).get(var_name)
        if not value:
            raise KekError(
                f"environment variable {var_name} is not set or empty; it must hold the KEK "
                "as base64 of 32 bytes (keys.kek.env_var in the config names it)"
            )
        super().__init__(
            _decode_kek(value, source=source), source=source, random_bytes=random_bytes
        )


def generate_kek_file(
    path: Path, *, token_bytes: Callable[[int], bytes] = secrets.token_bytes
) -> str:
    """Create a new KEK file (mode 0600, never overwriting); returns its non-secret kek_id."""
    material = token_bytes(KEK_BYTES)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise KekError(
            f"{path}: already exists; refusing to overwrite a KEK (that would make every "
            "keystore wrapped with it unreadable). Choose another path or move the old one."
        ) from None
    except OSError as exc:
        raise KekError(f"{path}: cannot create KEK file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # in case the umask was looser than asked for
            handle.write(binascii.b2a_base64(material, newline=True))
            handle.flush()
            os.fsync(handle.fileno())
        # The folder too: without it a power cut can lose the new name, and with it the only
        # KEK that opens a keystore re-wrapped (durably) right after this returns.
        fsync_dir(path.parent)
    except OSError as exc:
        path.unlink(missing_ok=True)  # nothing is wrapped under it yet: safe to remove
        raise KekError(
            f"{path}: cannot write KEK file durably ({exc.strerror or exc}); it was removed "
            "and nothing was changed: fix the folder or disk, then retry"
        ) from None
    return kek_fingerprint(material)

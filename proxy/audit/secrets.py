"""The two audit secrets: the chain's HMAC key and the optional checkpoint signing key.

The HMAC key is created on first use only when there is no audit trail yet: a missing key next
to an existing trail means someone moved or deleted it, and silently starting a new key would
hide that (every old event would then fail verification with no explanation).

Both key files must be private to the proxy's user (no permission at all for group or others):
whoever can read the HMAC key can re-seal an edited trail, and whoever can read the signing key
can sign forged checkpoints. A looser file is refused, never used.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import TYPE_CHECKING, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keys.file_modes import GROUP_OR_OTHERS, loose_mode_problem
from proxy.audit.errors import AuditError

if TYPE_CHECKING:
    from pathlib import Path

    from proxy.audit.settings import AuditSettings

__all__ = ["ChainKey", "key_file_problem", "load_chain_key", "load_public_key", "load_signing_key"]

KEY_BYTES: Final = 32


class ChainKey:
    """The chain's HMAC key; prints as `[secure]` so it cannot leak through a repr or log."""

    __slots__ = ("_material",)

    def __init__(self, material: bytes) -> None:
        """Wrap 32+ bytes of key material."""
        if len(material) < KEY_BYTES:
            raise AuditError("the audit key must be at least 32 bytes")
        self._material = material

    def __repr__(self) -> str:
        return "ChainKey([secure])"

    def reveal_for_hmac(self) -> bytes:
        """The raw bytes, for hmac.new only."""
        return self._material


def _decode(text: str, where: str) -> ChainKey:
    try:
        return ChainKey(base64.b64decode(text.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise AuditError(
            f"{where}: the audit key is not base64 of 32 random bytes; restore the right key "
            "(a new key cannot verify the existing trail)"
        ) from None


def _require_private(path: Path, what: str, consequence: str) -> None:
    """Refuse a key file that group or others may read or write (AuditError)."""
    problem = loose_mode_problem(path, what, forbid=GROUP_OR_OTHERS)
    if problem is not None:
        raise AuditError(f"{problem}. It was not used: {consequence}")


def key_file_problem(settings: AuditSettings) -> str | None:
    """What `load_chain_key`/`load_signing_key` would refuse about file modes, without reading.

    For `phi-proxy check-config`: a loose audit or signing key found before deploying, not when
    the pod refuses to start. None when fine (or not configured, or not created yet).
    """
    files = [] if settings.key_env is not None else [(settings.key_file, "audit.key_file")]
    if settings.signing_key_file is not None:
        files.append((settings.signing_key_file, "audit.signing_key_file"))
    for path, setting in files:
        problem = loose_mode_problem(path, f"audit secret ({setting})", forbid=GROUP_OR_OTHERS)
        if problem is not None:
            return problem
    return None


def _create(path: Path) -> None:
    material = base64.b64encode(os.urandom(KEY_BYTES)) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, material)
        os.fsync(fd)
    finally:
        os.close(fd)


def load_chain_key(settings: AuditSettings) -> ChainKey:
    """Read the HMAC key from `key_env` or `key_file`, creating the file for a brand-new trail."""
    if settings.key_env is not None:
        value = os.environ.get(settings.key_env)
        if not value:
            raise AuditError(
                f"audit.key_env names ${settings.key_env}, but it is not set; export the audit "
                "key there or remove audit.key_env to use audit.key_file"
            )
        return _decode(value, f"${settings.key_env}")
    path = settings.key_file
    if not path.exists():
        if settings.sink == "file" and settings.path.exists() and settings.path.stat().st_size:
            raise AuditError(
                f"{path}: the audit key is missing but the audit trail {settings.path} exists; "
                "restore the key from backup (a new key would make the old trail unverifiable)"
            )
        try:
            _create(path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError as exc:
            raise AuditError(
                f"{path}: cannot create the audit key ({exc.strerror}); check the folder"
            ) from None
    _require_private(
        path,
        "audit key (audit.key_file)",
        "anyone who can read it can re-seal an edited audit trail. After `chmod 600`, ask "
        "whether someone else could have read it; if so, keep the old key to verify the old "
        "trail and start a new trail with a new key",
    )
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditError(f"{path}: cannot read the audit key ({exc.__class__.__name__})") from None
    return _decode(text, str(path))


def load_signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    """The checkpoint signing key (PEM, unencrypted PKCS#8), or None when not configured."""
    if path is None:
        return None
    _require_private(
        path,
        "checkpoint signing key (audit.signing_key_file)",
        "anyone who can read it can sign forged checkpoints. After `chmod 600`, if someone "
        "else could have read it, make a new key pair and give auditors the new public key",
    )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise AuditError(
            f"{path}: cannot load the checkpoint signing key ({exc.__class__.__name__}); it "
            "must be an unencrypted Ed25519 PEM key (openssl genpkey -algorithm ed25519)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditError(f"{path}: the checkpoint signing key must be an Ed25519 key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An auditor's copy of the checkpoint public key (PEM)."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise AuditError(f"{path}: cannot load the public key ({exc.__class__.__name__})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AuditError(f"{path}: the checkpoint public key must be an Ed25519 key")
    return key

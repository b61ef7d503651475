"""The keystore document: what the JSON file holds, and how its contents are checked and sealed.

    {"format": "phi-proxy-keystore", "version": 1, "kek_id": "…",
     "keys": [{"kid", "practice", "version", "state", "created_at", "wrapped"}, …],
     "integrity": "…"}

- Each DEK is wrapped with associated data binding its kid, practice and version, so a wrapped
  DEK copied to another entry does not open (the error names the file and the kid).
- `integrity` is the KEK's wrap of SHA-256 over the canonical JSON of everything else, so editing
  a state by hand (retired → active) is detected on load. It uses only wrap/unwrap, so an HSM or
  KMS provider fits unchanged.
- Anything wrong with the document raises KeystoreError (or KekError for the wrong KEK) naming
  the file and the problem.

This module turns bytes into verified records and back; it never touches the file itself
(keys.keystore does, under the lock).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, StrictInt, ValidationError

from keys._aead import DEK_BYTES
from keys.config_file import describe_validation_error
from keys.errors import InvalidToken, KekError, KekUnavailable, KeystoreError
from keys.keyring import KeyInfo, KeyState, is_practice_id
from keys.token_format import b64url_decode, b64url_encode, is_kid

if TYPE_CHECKING:
    from pathlib import Path

    from keys.kek import KekProvider

__all__ = [
    "KEYSTORE_FORMAT",
    "KEYSTORE_VERSION",
    "RESTORE",
    "KeyRecord",
    "canonical_json",
    "check_invariants",
    "decode_keystore",
    "dek_wrap_aad",
    "describe_wrap_aad",
    "encode_keystore",
    "unwrap_dek",
]

KEYSTORE_FORMAT: Final = "phi-proxy-keystore"
KEYSTORE_VERSION: Final = 1
#: The advice every "this file is damaged" error ends with.
RESTORE: Final = "restore the file from backup"
_INTEGRITY_AAD: Final = b"phi-proxy keystore v1 integrity"
_DEK_AAD_PREFIX: Final = b"phi-proxy keystore v1\0"


def dek_wrap_aad(kid: str, practice: str, version: int) -> bytes:
    """Associated data binding a wrapped DEK to its kid, practice and version."""
    return _DEK_AAD_PREFIX + f"{kid}\0{practice}\0{version}".encode()


def describe_wrap_aad(aad: bytes) -> dict[str, str] | None:
    """The named fields of an AAD this module makes, or None for any other bytes.

    For KEKs that bind named strings rather than bytes (a KMS encryption context, which also
    shows in the KMS's own audit log): `{"purpose": "dek", "kid", "practice", "version"}` or
    `{"purpose": "integrity"}`. Exact: `dek_wrap_aad` of the fields gives back these bytes.
    """
    if aad == _INTEGRITY_AAD:
        return {"purpose": "integrity"}
    if not aad.startswith(_DEK_AAD_PREFIX):
        return None
    try:
        kid, practice, version = aad[len(_DEK_AAD_PREFIX) :].decode("ascii").split("\0")
    except (UnicodeDecodeError, ValueError):
        return None
    if not version.isdigit() or dek_wrap_aad(kid, practice, int(version)) != aad:
        return None
    return {"purpose": "dek", "kid": kid, "practice": practice, "version": version}


class _KeyRecordModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kid: str
    practice: str
    version: StrictInt
    state: KeyState
    created_at: AwareDatetime
    wrapped: str | None


class _KeystoreModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["phi-proxy-keystore"]
    version: Literal[1]
    kek_id: str
    keys: list[_KeyRecordModel]
    integrity: str


class KeyRecord:
    """One key as stored: facts plus the wrapped DEK (None once destroyed)."""

    __slots__ = ("info", "wrapped")

    def __init__(self, info: KeyInfo, wrapped: bytes | None) -> None:
        self.info = info
        self.wrapped = wrapped

    def to_json(self) -> dict[str, Any]:
        """The record's entry in the document's `keys` list."""
        return {
            "kid": self.info.kid,
            "practice": self.info.practice,
            "version": self.info.version,
            "state": self.info.state.value,
            "created_at": self.info.created_at.isoformat(),
            "wrapped": None if self.wrapped is None else b64url_encode(self.wrapped),
        }


def canonical_json(doc: dict[str, Any]) -> bytes:
    """The bytes the integrity seal covers: everything but `integrity`, in one fixed spelling."""
    body = {k: v for k, v in doc.items() if k != "integrity"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def encode_keystore(records: list[KeyRecord], kek: KekProvider) -> bytes:
    """The sealed document for `records`, as the bytes written to the file."""
    doc: dict[str, Any] = {
        "format": KEYSTORE_FORMAT,
        "version": KEYSTORE_VERSION,
        "kek_id": kek.kek_id,
        "keys": [r.to_json() for r in records],
    }
    digest = hashlib.sha256(canonical_json(doc)).digest()
    doc["integrity"] = b64url_encode(kek.wrap(digest, _INTEGRITY_AAD))
    return (json.dumps(doc, indent=2) + "\n").encode()


def decode_keystore(raw: bytes, kek: KekProvider, path: Path) -> list[KeyRecord]:
    """Parse and authenticate the document read from `path`; every failure names the file."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise KeystoreError(
            f"{path}: not valid JSON (truncated or corrupted?); {RESTORE}"
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != KEYSTORE_FORMAT:
        raise KeystoreError(
            f'{path}: not a phi-proxy keystore (no "format": "{KEYSTORE_FORMAT}"); '
            "check keys.keystore in the config points at the right file"
        )
    if doc.get("version") != KEYSTORE_VERSION:
        raise KeystoreError(
            f"{path}: keystore format version {doc.get('version')!r} is not supported by "
            f"this phi-proxy (it reads version {KEYSTORE_VERSION}); upgrade phi-proxy"
        )
    try:
        model = _KeystoreModel.model_validate(doc)
    except ValidationError as exc:
        detail = describe_validation_error(exc)
        raise KeystoreError(f"{path}: malformed keystore; {RESTORE}\n{detail}") from None
    if model.kek_id != kek.kek_id:
        raise KekError(
            f"{path}: this keystore was made with KEK id {model.kek_id}, but the configured "
            f"KEK has id {kek.kek_id}: wrong KEK file? Check keys.kek in the config."
        )
    records = [_record_from(m, path) for m in model.keys]
    _verify_integrity(doc, model.integrity, records, kek, path)
    check_invariants(records, path)
    return records


def unwrap_dek(record: KeyRecord, kek: KekProvider, path: Path) -> bytes | None:
    """The record's DEK (None once destroyed); a DEK moved from another entry does not open."""
    if record.wrapped is None:
        return None
    info = record.info
    try:
        dek = kek.unwrap(record.wrapped, dek_wrap_aad(info.kid, info.practice, info.version))
    except KekUnavailable:
        raise  # the device or service failed: nothing is known about this entry
    except KekError:
        raise KeystoreError(
            f"{path}: key {info.kid} does not open as practice {info.practice} "
            f"version {info.version}: its wrapped key was moved from another entry or "
            f"altered; {RESTORE}"
        ) from None
    if len(dek) != DEK_BYTES:
        raise KeystoreError(f"{path}: key {info.kid} has the wrong length; {RESTORE}")
    return dek


def check_invariants(records: list[KeyRecord], path: Path) -> None:
    """Refuse duplicated keys, and a practice with more than one active key."""
    kids: set[str] = set()
    versions: set[tuple[str, int]] = set()
    active: set[str] = set()
    for record in records:
        info = record.info
        if info.kid in kids or (info.practice, info.version) in versions:
            raise KeystoreError(f"{path}: key {info.kid} is duplicated; {RESTORE}")
        kids.add(info.kid)
        versions.add((info.practice, info.version))
        if info.state is KeyState.ACTIVE:
            if info.practice in active:
                raise KeystoreError(
                    f"{path}: practice {info.practice} has more than one active key; {RESTORE}"
                )
            active.add(info.practice)


def _verify_integrity(
    doc: dict[str, Any], seal: str, records: list[KeyRecord], kek: KekProvider, path: Path
) -> None:
    expected = hashlib.sha256(canonical_json(doc)).digest()
    try:
        sealed = kek.unwrap(b64url_decode(seal), _INTEGRITY_AAD)
    except KekUnavailable:
        raise
    except (InvalidToken, KekError):
        sealed = b""
    if hmac.compare_digest(sealed, expected):
        return
    for record in records:  # name the entry if a wrapped DEK was moved or altered
        unwrap_dek(record, kek, path)
    raise KeystoreError(
        f"{path}: integrity check failed: the file was changed outside phi-keys "
        f"(for example a key state edited by hand); {RESTORE}"
    )


def _record_from(model: _KeyRecordModel, path: Path) -> KeyRecord:
    if not is_kid(model.kid):
        raise KeystoreError(f"{path}: a key id is not 16 lowercase hex characters; {RESTORE}")
    if not is_practice_id(model.practice) or model.version < 1:
        raise KeystoreError(f"{path}: key {model.kid} has an invalid practice or version")
    if (model.state is KeyState.DESTROYED) != (model.wrapped is None):
        raise KeystoreError(
            f"{path}: key {model.kid}: only a destroyed key may lack material; {RESTORE}"
        )
    try:
        wrapped = None if model.wrapped is None else b64url_decode(model.wrapped)
    except InvalidToken:
        raise KeystoreError(f"{path}: key {model.kid}: wrapped key is not base64url") from None
    created = model.created_at.astimezone(UTC)
    info = KeyInfo(model.kid, model.practice, model.version, model.state, created)
    return KeyRecord(info, wrapped)

"""The canary register: which tokens belong to made-up patients planted as tripwires.

A canary is a fake patient planted in the portal whose PHI tokens no real workflow reads; the
proxy raises an alert whenever one passes through it. The register tells the proxy which tokens
those are, without telling anyone who reads the file: each canary token is stored *sealed*,
encrypted under its practice's data key as a token of the reserved class `SEAL_CLASS`. Without
the KEK the file says how many canaries a practice has and of which classes, never which portal
record is one, and never the canary's (made-up) values.

The file (`keys.canaries_file`, default `<keystore>.canaries.json` beside the keystore) is
written like the keystore: under an exclusive lock, atomically (temp file, fsync, rename), mode
0600. A register writable by group or others is refused: whoever can edit it can silence the
tripwire.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from keys._file_ops import exclusive_lock, write_atomic
from keys.errors import InvalidToken, KeyringError
from keys.file_modes import GROUP_OR_OTHERS_WRITE, loose_mode_problem
from keys.token_format import TOKEN_PREFIX, is_field_class, is_kid

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from keys.keyring import Keyring
    from keys.settings import KeySettings

__all__ = [
    "REGISTER_FORMAT",
    "SEAL_CLASS",
    "CanaryEntry",
    "CanaryField",
    "CanaryRegister",
    "CanaryRegisterError",
    "canaries_path",
    "new_canary_id",
    "parse_register",
    "seal_field",
    "unseal_field",
    "utc_stamp",
]

REGISTER_FORMAT: Final = "phi-proxy-canary-register"
_VERSION: Final = 1
#: The reserved field class sealed register values use (a class no portal field should carry).
SEAL_CLASS: Final = "phi_canary_register"
_ID_PREFIX: Final = "c_"
_ID_HEX: Final = 16
_MAX_LABEL: Final = 200
_LOCK_TIMEOUT: Final = 10.0


class CanaryRegisterError(KeyringError):
    """The canary register cannot be read, parsed, opened or written (the message says why)."""


@dataclass(frozen=True, slots=True)
class CanaryField:
    """One planted value of a canary: its field class and its token, sealed."""

    field_class: str
    sealed: str


@dataclass(frozen=True, slots=True)
class CanaryEntry:
    """One canary patient: id, practice, the operator's note, and its sealed tokens."""

    canary_id: str
    practice: str
    label: str
    created_at: str
    created_by: str | None
    fields: tuple[CanaryField, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        """Its field classes, once each (a rewrap adds a second token of the same class)."""
        return tuple(dict.fromkeys(f.field_class for f in self.fields))

    def to_json(self) -> dict[str, Any]:
        """The entry as the register file stores it."""
        return {
            "id": self.canary_id,
            "practice": self.practice,
            "label": self.label,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "fields": [{"class": f.field_class, "sealed": f.sealed} for f in self.fields],
        }


def canaries_path(settings: KeySettings) -> Path:
    """keys.canaries_file, else `<keystore>.canaries.json` beside the keystore."""
    if settings.canaries_file is not None:
        return settings.canaries_file
    return settings.keystore.with_name(settings.keystore.name + ".canaries.json")


def new_canary_id() -> str:
    """`c_` and 16 random hex digits: names a canary in alerts and reports, reveals nothing."""
    return _ID_PREFIX + secrets.token_hex(_ID_HEX // 2)


def _is_canary_id(value: object) -> bool:
    return (
        isinstance(value, str)
        and value.startswith(_ID_PREFIX)
        and is_kid(value[len(_ID_PREFIX) :])  # 16 lowercase hex digits, like a key id
    )


def seal_field(keyring: Keyring, practice: str, field_class: str, token: str) -> CanaryField:
    """Seal a canary token under its practice's active key (random nonce)."""
    return CanaryField(field_class, keyring.encrypt(practice, SEAL_CLASS, token))


def unseal_field(keyring: Keyring, practice: str, field: CanaryField) -> str:
    """The canary token sealed in `field`; CanaryRegisterError if it does not open as one.

    The sealed value must open with one of `practice`'s keys as the reserved class, and hold a
    token of the field's class under one of that practice's keys.
    """
    try:
        opened = keyring.open(field.sealed)
    except InvalidToken:
        raise CanaryRegisterError("sealed value does not open with this keystore") from None
    if opened.practice != practice or opened.field_class != SEAL_CLASS:
        raise CanaryRegisterError("sealed value belongs to another practice or class")
    token = opened.plaintext
    parts = token.split(".", 4)
    if (
        not token.startswith(TOKEN_PREFIX)
        or len(parts) != 5  # noqa: PLR2004 - the five parts of a token
        or keyring.practice_of(parts[2]) != practice
        or parts[3] != field.field_class
    ):
        raise CanaryRegisterError("sealed value is not a token of this practice and class")
    return token


def _field(raw: object, where: str) -> CanaryField:
    if not isinstance(raw, dict) or set(raw) != {"class", "sealed"}:
        raise CanaryRegisterError(f"{where}: expected an object with `class` and `sealed`")
    field_class, sealed = raw["class"], raw["sealed"]
    if not isinstance(field_class, str) or not is_field_class(field_class):
        raise CanaryRegisterError(f"{where}: `class` is not a field class name")
    if not isinstance(sealed, str) or not sealed.startswith(TOKEN_PREFIX):
        raise CanaryRegisterError(f"{where}: `sealed` is not a token")
    return CanaryField(field_class, sealed)


def _entry(raw: object, where: str) -> CanaryEntry:
    keys = {"id", "practice", "label", "created_at", "created_by", "fields"}
    if not isinstance(raw, dict) or set(raw) != keys:
        raise CanaryRegisterError(f"{where}: expected an object with {', '.join(sorted(keys))}")
    if not _is_canary_id(raw["id"]):
        raise CanaryRegisterError(f"{where}: `id` is not a canary id (c_ and 16 hex digits)")
    practice, label, created_at, created_by = (
        raw["practice"],
        raw["label"],
        raw["created_at"],
        raw["created_by"],
    )
    if not isinstance(practice, str) or not practice:
        raise CanaryRegisterError(f"{where}: `practice` is not a practice id")
    if not isinstance(label, str) or len(label) > _MAX_LABEL:
        raise CanaryRegisterError(f"{where}: `label` is not text of at most {_MAX_LABEL} chars")
    if not isinstance(created_at, str) or not (created_by is None or isinstance(created_by, str)):
        raise CanaryRegisterError(f"{where}: `created_at` / `created_by` are not text")
    fields = raw["fields"]
    if not isinstance(fields, list) or not fields:
        raise CanaryRegisterError(f"{where}: `fields` is not a non-empty list")
    parsed = tuple(_field(item, f"{where}.fields[{i}]") for i, item in enumerate(fields))
    return CanaryEntry(raw["id"], practice, label, created_at, created_by, parsed)


def parse_register(data: bytes, path: Path) -> tuple[CanaryEntry, ...]:
    """The entries of a register file's bytes; CanaryRegisterError naming `path` otherwise."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise CanaryRegisterError(f"{path}: the canary register is not valid JSON") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != REGISTER_FORMAT
        or doc.get("version") != _VERSION
        or not isinstance(doc.get("canaries"), list)
        or set(doc) != {"format", "version", "canaries"}
    ):
        raise CanaryRegisterError(
            f"{path}: not a canary register (format {REGISTER_FORMAT} version {_VERSION})"
        )
    entries = tuple(
        _entry(item, f"{path}: canaries[{i}]") for i, item in enumerate(doc["canaries"])
    )
    ids = [e.canary_id for e in entries]
    if len(set(ids)) != len(ids):
        raise CanaryRegisterError(f"{path}: the canary register lists one id twice")
    return entries


def _encode(entries: tuple[CanaryEntry, ...]) -> bytes:
    doc = {
        "format": REGISTER_FORMAT,
        "version": _VERSION,
        "canaries": [e.to_json() for e in entries],
    }
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


class CanaryRegister:
    """The register file: read it, add an entry or tokens to one, remove one (locked, atomic)."""

    def __init__(self, path: Path, *, lock_timeout: float = _LOCK_TIMEOUT) -> None:
        """Use the register at `path` (it need not exist yet: no file means no canaries)."""
        self.path = path
        self._lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"CanaryRegister({str(self.path)!r})"

    def read(self) -> tuple[CanaryEntry, ...]:
        """Every entry; () when the file does not exist. CanaryRegisterError when unusable."""
        problem = loose_mode_problem(self.path, "canary register", forbid=GROUP_OR_OTHERS_WRITE)
        if problem is not None:
            raise CanaryRegisterError(problem)
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise CanaryRegisterError(
                f"{self.path}: cannot read the canary register ({exc.strerror})"
            ) from None
        return parse_register(data, self.path)

    def add(self, entry: CanaryEntry) -> None:
        """Append `entry` (its id must be new)."""

        def change(entries: tuple[CanaryEntry, ...]) -> tuple[CanaryEntry, ...]:
            if any(e.canary_id == entry.canary_id for e in entries):
                raise CanaryRegisterError(f"{self.path}: canary {entry.canary_id} exists already")
            return (*entries, entry)

        self._mutate(change)

    def remove(self, canary_id: str) -> CanaryEntry:
        """Remove the entry `canary_id` and return it; CanaryRegisterError if there is none."""
        removed: list[CanaryEntry] = []

        def change(entries: tuple[CanaryEntry, ...]) -> tuple[CanaryEntry, ...]:
            kept = tuple(e for e in entries if e.canary_id != canary_id)
            removed.extend(e for e in entries if e.canary_id == canary_id)
            if not removed:
                raise CanaryRegisterError(
                    f"{self.path}: no canary {canary_id}; `phi-keys canary --list` shows the ids"
                )
            return kept

        self._mutate(change)
        return removed[0]

    def add_fields(self, additions: Mapping[str, tuple[CanaryField, ...]]) -> None:
        """Append sealed tokens to existing canaries (canary id -> new fields).

        A canary removed meanwhile stays removed: its additions are dropped.
        """

        def change(entries: tuple[CanaryEntry, ...]) -> tuple[CanaryEntry, ...]:
            return tuple(
                dataclasses.replace(e, fields=(*e.fields, *additions[e.canary_id]))
                if e.canary_id in additions
                else e
                for e in entries
            )

        self._mutate(change)

    def _mutate(self, change: Callable[[tuple[CanaryEntry, ...]], tuple[CanaryEntry, ...]]) -> None:
        lock = self.path.with_name(self.path.name + ".lock")
        with exclusive_lock(lock, timeout=self._lock_timeout, what=self.path):
            entries = change(self.read())
            try:
                write_atomic(self.path, _encode(entries))
            except OSError as exc:
                raise CanaryRegisterError(
                    f"{self.path}: cannot write the canary register ({exc.strerror or exc}); "
                    "the previous file is unchanged"
                ) from None


def utc_stamp(now: datetime | None = None) -> str:
    """`now` (default: the current time) as `YYYY-MM-DDTHH:MM:SSZ`."""
    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0, tzinfo=None)
    return moment.isoformat() + "Z"

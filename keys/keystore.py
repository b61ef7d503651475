"""The keystore file and every change to it: load, add, rotate, retire, destroy, shred, re-KEK.

The document inside (format, per-key AAD, integrity seal) is keys._keystore_doc, and the rules
for what a change may do to the list of keys are keys._keystore_rules; this module is about the
file and the operations on it.

- Writes are atomic (temp file in the same folder, fsync, rename, fsync the folder), mode 0600,
  and serialized across processes by `flock` on `<file>.lock`; every change is a
  read-modify-write under that lock, so two operators rotating at once both land.
- Anything wrong with the file raises KeystoreError (or KekError for the wrong KEK) naming the
  file and the problem, and the file is left byte-for-byte as it was.
"""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from keys._aead import DEK_BYTES
from keys._file_ops import exclusive_lock, write_atomic
from keys._keystore_doc import (
    KEYSTORE_FORMAT,
    KEYSTORE_VERSION,
    RESTORE,
    KeyRecord,
    check_invariants,
    decode_keystore,
    dek_wrap_aad,
    encode_keystore,
    unwrap_dek,
)
from keys._keystore_rules import (
    check_practice_id,
    destroy_retired,
    is_shredded,
    set_non_primary_state,
    shred_practice,
    shredded_message,
    shredded_practices,
    with_state,
)
from keys.errors import KekError, KeyringError, KeystoreError
from keys.keyring import KeyInfo, Keyring, KeyState

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from keys.kek import KekProvider

__all__ = [
    "KEYSTORE_FORMAT",
    "KEYSTORE_VERSION",
    "KeystoreFile",
    "dek_wrap_aad",
    "shredded_practices",
]

_T = TypeVar("_T")
_K = TypeVar("_K", bound=Keyring)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class KeystoreFile:
    """Reads and changes one keystore file with one KEK. Stateless between calls.

    `clock`, `token_bytes` and `replace` are seams for tests (time, randomness, and a rename
    that can be made to fail to simulate a crash); production uses the defaults.
    """

    def __init__(
        self,
        path: Path,
        kek: KekProvider,
        *,
        clock: Callable[[], datetime] = _utc_now,
        token_bytes: Callable[[int], bytes] = secrets.token_bytes,
        replace: Callable[[Path, Path], None] = os.replace,
        lock_timeout: float = 30.0,
    ) -> None:
        # The real file: a write through a symlink must replace the target, not the link, and
        # every name for the keystore must share one lock file.
        self._path = Path(os.path.realpath(path))
        self._kek = kek
        self._clock = clock
        self._token_bytes = token_bytes
        self._replace = replace
        self._lock_timeout = lock_timeout

    def __repr__(self) -> str:
        return f"<KeystoreFile {self._path} kek_id={self._kek.kek_id}>"

    @property
    def path(self) -> Path:
        """The keystore file."""
        return self._path

    @property
    def kek_id(self) -> str:
        """The fingerprint of the KEK this object wraps with (non-secret)."""
        return self._kek.kek_id

    def exists(self) -> bool:
        """True if the keystore file exists (says nothing about whether it is valid)."""
        return self._path.exists()

    # ---- reading -------------------------------------------------------------------------

    def load(self) -> Keyring:
        """Verify the file, unwrap every live DEK once, and return a ready Keyring."""
        return self.load_as(Keyring)

    def load_as(self, keyring_type: type[_K]) -> _K:
        """`load`, building a Keyring subclass (e.g. keys.usage.CountingKeyring)."""
        records = self._read()
        material = [(r.info, unwrap_dek(r, self._kek, self._path)) for r in records]
        try:
            ring = keyring_type.from_material(material)
        except KeystoreError:
            raise
        except KeyringError as exc:
            raise KeystoreError(f"{self._path}: {exc}; {RESTORE}") from None
        if not isinstance(ring, keyring_type):  # from_material builds `cls`; never taken
            raise TypeError(keyring_type.__name__)
        return ring

    def infos(self) -> tuple[KeyInfo, ...]:
        """Verified facts about every key (no DEK is unwrapped), by practice then version."""
        return tuple(sorted((r.info for r in self._read()), key=lambda i: (i.practice, i.version)))

    # ---- changing ------------------------------------------------------------------------

    def create(self) -> None:
        """Create an empty keystore bound to this KEK; refuses to overwrite an existing file."""
        with exclusive_lock(self._lock_path, timeout=self._lock_timeout, what=self._path):
            if self._path.exists():
                raise KeystoreError(
                    f"{self._path}: already exists; refusing to overwrite a keystore "
                    "(that would destroy every key in it). Use another path or remove it "
                    "deliberately after making sure nothing is encrypted under it."
                )
            self._write([])

    def add_practices(
        self, practices: Iterable[str], *, after_shred: bool = False
    ) -> tuple[KeyInfo, ...]:
        """Give each new practice an ACTIVE version 1 key; all or nothing.

        A shredded practice (every key destroyed) is refused unless `after_shred`: then it gets
        a new ACTIVE key, numbered after its destroyed ones (a deliberate fresh start).
        """
        wanted = list(dict.fromkeys(practices))
        for practice in wanted:
            check_practice_id(practice)

        def change(records: list[KeyRecord]) -> tuple[KeyInfo, ...]:
            known = {r.info.practice for r in records}
            clash = [
                p for p in wanted if p in known and not (after_shred and is_shredded(records, p))
            ]
            if clash:
                if is_shredded(records, clash[0]):
                    raise KeyringError(shredded_message(clash[0], self._path))
                raise KeyringError(
                    f"practice {clash[0]} already has keys in {self._path}; "
                    f"to make a new key version use `phi-keys rotate --practice {clash[0]}`"
                )
            return tuple(
                self._rotate_in(records, p, after_shred=True)
                if p in known
                else self._new_key(records, p, 1)
                for p in wanted
            )

        return self._mutate(change)

    def rotate(self, practice: str, *, only_if_active: str | None = None) -> KeyInfo:
        """Make a new ACTIVE version for `practice`; the previous ACTIVE becomes DECRYPT_ONLY.

        With `only_if_active=KID`, rotate only while KID is still the practice's active key and
        otherwise return the current active key unchanged: several proxy workers that decide
        to auto-rotate at the same moment then make one new version, not one each.
        """

        def change(records: list[KeyRecord]) -> KeyInfo:
            if only_if_active is not None:
                for record in records:
                    info = record.info
                    if info.practice == practice and info.state is KeyState.ACTIVE:
                        if info.kid != only_if_active:
                            return info
                        break
            return self._rotate_in(records, practice)

        return self._mutate(change)

    def rotate_all(self) -> tuple[KeyInfo, ...]:
        """Rotate every practice in the file, in one atomic write; shredded ones are skipped."""

        def change(records: list[KeyRecord]) -> tuple[KeyInfo, ...]:
            practices = sorted(
                {r.info.practice for r in records} - shredded_practices(r.info for r in records)
            )
            return tuple(self._rotate_in(records, p) for p in practices)

        return self._mutate(change)

    def set_state(self, kid: str, state: KeyState) -> KeyInfo:
        """Move a non-primary key between DECRYPT_ONLY and RETIRED (retire, or un-retire)."""
        return self._mutate(lambda records: set_non_primary_state(records, kid, state, self._path))

    def destroy(self, kid: str) -> KeyInfo:
        """Wipe a RETIRED key's material from the file: its tokens can never be opened again."""
        return self._mutate(lambda records: destroy_retired(records, kid, self._path))

    def shred(self, practice: str) -> tuple[KeyInfo, ...]:
        """Destroy every key of `practice`, the active one included (crypto-shredding).

        Its tokens can never be opened again by anyone. Copies of the file made before (backups,
        `.bak-<kek_id>` files from `rotate-kek`) still hold the material: see docs.
        """
        return self._mutate(lambda records: shred_practice(records, practice, self._path))

    def rekek(self, new_kek: KekProvider, *, backup: bool = True) -> Path | None:
        """Rewrap every DEK under `new_kek` in one atomic write (this object's KEK is the old one).

        With `backup`, the current file is first copied to `<keystore>.bak-<old kek_id>`
        (0600): the old KEK keeps opening that copy until the operator deletes both. Returns
        the backup path. Afterwards this file opens only with `new_kek`.
        """
        if new_kek.kek_id == self._kek.kek_id:
            raise KekError(
                f"{self._path}: the new KEK is the KEK already in use (kek id {new_kek.kek_id}); "
                "generate a new one with `phi-keys rotate-kek --generate --new-kek PATH`"
            )
        target = KeystoreFile(
            self._path, new_kek, replace=self._replace, lock_timeout=self._lock_timeout
        )
        with exclusive_lock(self._lock_path, timeout=self._lock_timeout, what=self._path):
            records = self._read()
            for record in records:
                dek = unwrap_dek(record, self._kek, self._path)
                if dek is not None:
                    aad = dek_wrap_aad(record.info.kid, record.info.practice, record.info.version)
                    record.wrapped = new_kek.wrap(dek, aad)
            saved = None
            if backup:
                saved = self._path.with_name(f"{self._path.name}.bak-{self._kek.kek_id}")
                try:
                    write_atomic(saved, self._path.read_bytes(), replace=self._replace)
                except OSError as exc:
                    raise KeystoreError(
                        f"{saved}: cannot write the backup ({exc.strerror or exc}); "
                        "nothing was changed"
                    ) from None
            target._write(records)  # same class, the other KEK
            return saved

    # ---- internals -----------------------------------------------------------------------

    @property
    def _lock_path(self) -> Path:
        return self._path.with_name(self._path.name + ".lock")

    def _mutate(self, change: Callable[[list[KeyRecord]], _T]) -> _T:
        with exclusive_lock(self._lock_path, timeout=self._lock_timeout, what=self._path):
            records = self._read()
            result = change(records)
            check_invariants(records, self._path)
            self._write(records)
            return result

    def _rotate_in(
        self, records: list[KeyRecord], practice: str, *, after_shred: bool = False
    ) -> KeyInfo:
        mine = [r for r in records if r.info.practice == practice]
        if not mine:
            raise KeyringError(
                f"practice {practice} has no keys in {self._path}; "
                f"add it with `phi-keys add-practice {practice}`"
            )
        if not after_shred and is_shredded(records, practice):
            raise KeyringError(shredded_message(practice, self._path))
        for record in mine:
            if record.info.state is KeyState.ACTIVE:
                record.info = with_state(record.info, KeyState.DECRYPT_ONLY)
        return self._new_key(records, practice, max(r.info.version for r in mine) + 1)

    def _new_key(self, records: list[KeyRecord], practice: str, version: int) -> KeyInfo:
        used = {r.info.kid for r in records}
        kid = self._token_bytes(8).hex()
        while (
            kid in used
        ):  # 64 random bits: a clash is astronomically unlikely, but cheap to rule out
            kid = self._token_bytes(8).hex()
        created = self._clock().astimezone(UTC).replace(microsecond=0)
        info = KeyInfo(kid, practice, version, KeyState.ACTIVE, created)
        dek = self._token_bytes(DEK_BYTES)
        records.append(KeyRecord(info, self._kek.wrap(dek, dek_wrap_aad(kid, practice, version))))
        return info

    def _read(self) -> list[KeyRecord]:
        """Read, parse, and authenticate the whole file; every failure names the file."""
        path = self._path
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise KeystoreError(
                f"{path}: keystore not found; check keys.keystore in the config, or create "
                "one with `phi-keys init`"
            ) from None
        except OSError as exc:
            raise KeystoreError(f"{path}: cannot read keystore ({exc.strerror})") from None
        return decode_keystore(raw, self._kek, path)

    def _write(self, records: list[KeyRecord]) -> None:
        data = encode_keystore(records, self._kek)
        try:
            write_atomic(self._path, data, replace=self._replace)
        except OSError as exc:
            raise KeystoreError(
                f"{self._path}: cannot write keystore ({exc.strerror or exc}); "
                "the previous file is unchanged"
            ) from None

"""The rules for changing a keystore's list of keys, apart from the file they live in.

Each function here works on the decoded records and raises KeyringError naming the keystore
when a change is not allowed; keys.keystore applies them under its lock, checks the invariants
and writes the file. Keeping them here keeps the "what may change" rules readable on one page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.errors import KeyringError
from keys.keyring import KeyInfo, KeyState, is_practice_id

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from keys._keystore_doc import KeyRecord

__all__ = [
    "check_practice_id",
    "destroy_retired",
    "find_record",
    "is_shredded",
    "set_non_primary_state",
    "shred_practice",
    "shredded_message",
    "shredded_practices",
    "with_state",
]


def check_practice_id(practice: str) -> None:
    """Refuse a practice id the token format and the grant store could not carry."""
    if not is_practice_id(practice):
        raise KeyringError(
            f"{practice!r} is not a valid practice id: use 1-64 characters of letters, digits "
            "and . _ : @ -, starting with a letter or digit"
        )


def with_state(info: KeyInfo, state: KeyState) -> KeyInfo:
    """The same key facts in another state (KeyInfo is immutable)."""
    return KeyInfo(info.kid, info.practice, info.version, state, info.created_at)


def shredded_practices(infos: Iterable[KeyInfo]) -> set[str]:
    """Practices whose every key is destroyed (crypto-shredded): new writes stay refused."""
    every = list(infos)
    live = {i.practice for i in every if i.state is not KeyState.DESTROYED}
    return {i.practice for i in every} - live


def is_shredded(records: list[KeyRecord], practice: str) -> bool:
    """True if `practice` has keys and every one of them is destroyed."""
    return practice in shredded_practices(r.info for r in records)


def shredded_message(practice: str, path: Path) -> str:
    """What an operator reads when a change would revive a shredded practice."""
    return (
        f"practice {practice} was shredded (every key destroyed) in {path}; new writes for it "
        "stay refused. Nothing was changed. To start it over deliberately with a new key, run "
        f"`phi-keys add-practice {practice} --after-shred` (its old data stays unreadable)"
    )


def find_record(records: list[KeyRecord], kid: str, path: Path) -> KeyRecord:
    """The record of key `kid`, or a KeyringError pointing at `phi-keys list`."""
    for record in records:
        if record.info.kid == kid:
            return record
    raise KeyringError(f"no key with id {kid} in {path}; see `phi-keys list`")


def set_non_primary_state(
    records: list[KeyRecord], kid: str, state: KeyState, path: Path
) -> KeyInfo:
    """Move a key between DECRYPT_ONLY and RETIRED; the active and destroyed keys stay put."""
    if state not in {KeyState.DECRYPT_ONLY, KeyState.RETIRED}:
        raise KeyringError(
            f"cannot set a key to {state.value} directly: new active keys come from "
            "`phi-keys rotate`, and destroying is its own, irreversible step"
        )
    record = find_record(records, kid, path)
    if record.info.state is KeyState.ACTIVE:
        raise KeyringError(
            f"key {kid} is the active key of practice {record.info.practice}; rotate "
            "the practice first so that another key encrypts"
        )
    if record.info.state is KeyState.DESTROYED:
        raise KeyringError(f"key {kid} is destroyed; its material is gone for good")
    record.info = with_state(record.info, state)
    return record.info


def destroy_retired(records: list[KeyRecord], kid: str, path: Path) -> KeyInfo:
    """Wipe one RETIRED key's material; any other state is refused."""
    record = find_record(records, kid, path)
    if record.info.state is not KeyState.RETIRED:
        raise KeyringError(
            f"key {kid} is {record.info.state.value}; only a retired key can be "
            "destroyed (retire it first and check nothing still needs it)"
        )
    record.info = with_state(record.info, KeyState.DESTROYED)
    record.wrapped = None
    return record.info


def shred_practice(records: list[KeyRecord], practice: str, path: Path) -> tuple[KeyInfo, ...]:
    """Destroy every key of `practice`, the active one included."""
    mine = [r for r in records if r.info.practice == practice]
    if not mine:
        raise KeyringError(f"practice {practice} has no keys in {path}")
    for record in mine:
        record.info = with_state(record.info, KeyState.DESTROYED)
        record.wrapped = None
    return tuple(r.info for r in mine)

"""An immutable, in-memory snapshot of every practice's data keys, ready to use.

The keystore file unwraps each DEK once and hands the material to `Keyring.from_material`,
which derives the cipher subkeys once and keeps them behind a kid → entry dict. After that,
`open` is a header parse, one dict lookup and one AEAD call: nothing is re-derived or
re-unwrapped per token. A hot reload builds a new `Keyring` and swaps the reference, so there is
no locking in here.

Rules enforced on construction: kids are unique and well formed; each practice has at most one
ACTIVE (primary, encrypting) version; DESTROYED keys carry no material and every other key does.
RETIRED and DESTROYED keys stay *known* (so `practice_of` can still say whose a token is) but
refuse to decrypt.

Each keyring carries a bounded cache of tokens it has opened (`keys._opened_cache`): the same
token text always opens to the same value under the same keyring, so `open_fast` answers a
repeat from memory. A new keyring (rotation, retirement, shred, reload) starts empty.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from keys._aead import DEK_BYTES, NONCE_BYTES, TokenCipher
from keys._opened_cache import DEFAULT_CACHE_BYTES, DEFAULT_CACHE_ENTRIES, OpenedCache
from keys.errors import InvalidToken, KeyringError
from keys.native import native_module
from keys.token_format import (
    MODE_DETERMINISTIC,
    MODE_RANDOM,
    b64url_encode,
    format_header,
    is_field_class,
    is_kid,
    kid_of,
    malformed_reason,
    parse_token_fast,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from datetime import datetime

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "DEFAULT_CACHE_ENTRIES",
    "PRACTICE_ID_PATTERN",
    "KeyInfo",
    "KeyState",
    "Keyring",
    "OpenedToken",
    "is_practice_id",
]

#: Practice ids are chosen by operators (they come from the portal). Kept to a printable
#: subset without NUL so they can be bound into wrapping AAD unambiguously.
PRACTICE_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}")


def is_practice_id(practice: str) -> bool:
    """True if `practice` is 1-64 chars of [A-Za-z0-9._:@-], starting with a letter or digit."""
    return PRACTICE_ID_PATTERN.fullmatch(practice) is not None


class KeyState(StrEnum):
    """Lifecycle of one DEK version."""

    ACTIVE = "active"  # the practice's primary: encrypts and decrypts
    DECRYPT_ONLY = "decrypt-only"  # a previous version: decrypts old tokens
    RETIRED = "retired"  # refuses decryption; material kept for recovery
    DESTROYED = "destroyed"  # material wiped; tokens under it are gone for good


_DECRYPTING: Final = frozenset({KeyState.ACTIVE, KeyState.DECRYPT_ONLY})


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Non-secret facts about one key version (safe to list, log and print)."""

    kid: str
    practice: str
    version: int
    state: KeyState
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OpenedToken:
    """A decrypted token and the cryptographically bound facts about it."""

    kid: str
    practice: str
    field_class: str
    plaintext: str

    def __repr__(self) -> str:
        return (
            f"OpenedToken(kid={self.kid!r}, practice={self.practice!r}, "
            f"field_class={self.field_class!r}, plaintext=[redacted])"
        )


@dataclass(frozen=True, slots=True)
class _Entry:
    info: KeyInfo
    cipher: TokenCipher | None  # None only for DESTROYED


class Keyring:
    """All practices' keys; immutable. Build with `from_material` (or keys.testing.make_keyring)."""

    __slots__ = ("_by_kid", "_cache", "_native", "_openers", "_practice_by_kid", "_primary")

    _by_kid: Mapping[str, _Entry]
    _primary: Mapping[str, _Entry]

    def __init__(
        self,
        entries: Mapping[str, _Entry],
        primary: Mapping[str, _Entry],
        *,
        cache_entries: int = DEFAULT_CACHE_ENTRIES,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        native_material: Iterable[tuple[str, str, bytes]] = (),
    ) -> None:
        self._by_kid = MappingProxyType(dict(entries))
        self._primary = MappingProxyType(dict(primary))
        # Hot-path tables (plain dicts, private): kid → practice for every known key, and
        # kid → (practice, cipher) for keys allowed to decrypt.
        self._practice_by_kid = {kid: e.info.practice for kid, e in entries.items()}
        self._openers = {
            kid: (e.info.practice, e.cipher)
            for kid, e in entries.items()
            if e.cipher is not None and e.info.state in _DECRYPTING
        }
        self._cache = OpenedCache(max_entries=cache_entries, max_bytes=cache_bytes)
        # The compiled core's own copy of the decrypting keys (kid, practice, DEK), so the
        # native transform opens tokens without a call back into Python per value.
        native = native_module()
        self._native: object | None = None if native is None else native.Keys(list(native_material))

    @classmethod
    def from_material(cls, entries: Iterable[tuple[KeyInfo, bytes | None]]) -> Keyring:
        """Build a keyring from (info, 32-byte DEK or None when DESTROYED) pairs.

        Raises KeyringError (naming the kid, never material) if the set is inconsistent.
        """
        by_kid: dict[str, _Entry] = {}
        primary: dict[str, _Entry] = {}
        versions: set[tuple[str, int]] = set()
        material: list[tuple[str, str, bytes]] = []
        for info, dek in entries:
            _check_entry(info, dek)
            if info.kid in by_kid:
                raise KeyringError(f"key id {info.kid} appears twice; every key id must be unique")
            if (info.practice, info.version) in versions:
                raise KeyringError(
                    f"practice {info.practice} has two keys with version {info.version}"
                )
            versions.add((info.practice, info.version))
            entry = _Entry(info, None if dek is None else TokenCipher(dek))
            by_kid[info.kid] = entry
            if dek is not None and info.state in _DECRYPTING:
                material.append((info.kid, info.practice, dek))
            if info.state is KeyState.ACTIVE:
                if info.practice in primary:
                    raise KeyringError(
                        f"practice {info.practice} has more than one active key "
                        f"({primary[info.practice].info.kid}, {info.kid}); exactly one may encrypt"
                    )
                primary[info.practice] = entry
        return cls(by_kid, primary, native_material=material)

    def __repr__(self) -> str:
        return f"<Keyring practices={len(self.practices())} keys={len(self._by_kid)}>"

    @property
    def native_keys(self) -> object | None:
        """The compiled core's key table (`phi_proxy_core.Keys`), or None in the pure core."""
        return self._native

    @property
    def cached_tokens(self) -> int:
        """Tokens remembered by the opened-token caches, Python's and the compiled core's."""
        native = self._native
        compiled = native.cached if native is not None and hasattr(native, "cached") else 0
        return len(self._cache) + int(compiled)

    def practice_of(self, kid: str) -> str | None:
        """The practice owning `kid`, or None if unknown (retired/destroyed keys are known)."""
        return self._practice_by_kid.get(kid)

    def primary(self, practice: str) -> KeyInfo:
        """The practice's ACTIVE key; raises KeyringError if it has none."""
        entry = self._primary.get(practice)
        if entry is None:
            raise KeyringError(
                f"practice {practice!r} has no active key (never added, or shredded — see "
                f"`phi-keys list`): add a new practice with `phi-keys add-practice {practice}`; "
                "a practice whose keys are all retired gets one with `phi-keys rotate`"
            )
        return entry.info

    def practices(self) -> frozenset[str]:
        """Every practice that has at least one key, in any state."""
        return frozenset(e.info.practice for e in self._by_kid.values())

    def infos(self) -> tuple[KeyInfo, ...]:
        """Facts about every key, sorted by practice then version."""
        return tuple(
            sorted((e.info for e in self._by_kid.values()), key=lambda i: (i.practice, i.version))
        )

    def encrypt(
        self, practice: str, field_class: str, plaintext: str, *, deterministic: bool = False
    ) -> str:
        """Encrypt `plaintext` under the practice's primary key; returns a v1 token.

        `deterministic=True` uses AES-SIV: equal plaintexts of one class under one key give equal
        tokens (for equality lookups), which also reveals equality; use it only where needed.
        """
        return self._encrypt_with_nonce(
            practice,
            field_class,
            plaintext,
            nonce=None if deterministic else os.urandom(NONCE_BYTES),
        )

    def _encrypt_with_nonce(
        self, practice: str, field_class: str, plaintext: str, *, nonce: bytes | None
    ) -> str:
        """Encrypt with an explicit GCM nonce (None → SIV). Test-only seam for known answers."""
        entry = self._primary.get(practice)
        if entry is None or entry.cipher is None:
            self.primary(practice)  # raises the operator-facing KeyringError
            raise AssertionError  # pragma: no cover - primary() always raised
        if not is_field_class(field_class):
            raise KeyringError(
                f"field class {field_class!r} is not valid: use 1-32 chars of [a-z0-9_] "
                "starting with a letter (e.g. ssn, insurance_id)"
            )
        mode = MODE_DETERMINISTIC if nonce is None else MODE_RANDOM
        header = format_header(mode, entry.info.kid, field_class)
        aad = header.encode("ascii")
        data = plaintext.encode("utf-8")
        if nonce is None:
            payload = entry.cipher.seal_deterministic(data, aad)
        else:
            payload = entry.cipher.seal_random(nonce, data, aad)
        return header + b64url_encode(payload)

    def open(self, token: str) -> OpenedToken:
        """Decrypt a token; a malformed, unauthentic or unusable token raises bare InvalidToken."""
        practice, field_class, plaintext = self.open_fast(token)
        return OpenedToken(token.split(".", 3)[2], practice, field_class, plaintext)

    def open_fast(self, token: str) -> tuple[str, str, str]:
        """`open` for hot loops: (practice, field_class, plaintext), cached per token text.

        Same failures as `open` (bare InvalidToken). The cache only remembers tokens that
        opened; it answers "what does this token say", never "who may read it".
        """
        hit = self._cache.get(token)
        if hit is not None:
            return hit
        mode, kid, field_class, aad, payload = parse_token_fast(token)
        opener = self._openers.get(kid)
        if opener is None:
            raise InvalidToken
        practice, cipher = opener
        if mode == MODE_RANDOM:
            data = cipher.open_random(payload, aad)
        else:
            data = cipher.open_deterministic(payload, aad)
        try:
            plaintext = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidToken from None
        opened = (practice, field_class, plaintext)
        self._cache.put(token, opened)
        return opened

    def owns(self, practice: str, token: str) -> bool:
        """Header-only check: does the token name one of `practice`'s keys? Not authenticated."""
        try:
            kid = kid_of(token)
        except InvalidToken:
            return False
        entry = self._by_kid.get(kid)
        return entry is not None and entry.info.practice == practice

    def diagnose(self, token: str) -> str:
        """A log-safe reason code for why `token` would not open ("ok" if it opens).

        For operators' logs only: never shown to whoever supplied the token.
        """
        reason = malformed_reason(token)
        if reason is not None:
            return reason
        entry = self._by_kid.get(kid_of(token))
        if entry is None:
            return "unknown-kid"
        if entry.info.state not in _DECRYPTING:
            return f"key-{entry.info.state.value}"
        try:
            self.open(token)
        except InvalidToken:
            return "not-authentic"
        return "ok"


def _check_entry(info: KeyInfo, dek: bytes | None) -> None:
    """Validate one (info, material) pair; messages name the kid, never the material."""
    if not is_kid(info.kid):
        raise KeyringError("a key id must be 16 lowercase hex characters")
    if not is_practice_id(info.practice):
        raise KeyringError(f"key {info.kid}: practice id {info.practice!r} is not valid")
    if info.version < 1:
        raise KeyringError(f"key {info.kid}: version must be 1 or more")
    if info.created_at.tzinfo is None:
        raise KeyringError(f"key {info.kid}: created_at must carry a time zone")
    if not isinstance(info.state, KeyState):
        raise KeyringError(f"key {info.kid}: unknown state")
    if info.state is KeyState.DESTROYED:
        if dek is not None:
            raise KeyringError(f"key {info.kid} is destroyed but material was supplied")
    elif dek is None or len(dek) != DEK_BYTES:
        raise KeyringError(f"key {info.kid} ({info.state.value}) needs 32 bytes of key material")

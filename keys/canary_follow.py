"""Keep the canary register armed through a rewrap: a rewrapped canary token is registered too.

`phi-keys rewrap` replaces every token under an old key with a new one, the canaries' included.
The register names canary tokens by their exact text, so without this the tripwire would go
quiet on the next rewrap. The follower opens the register before the rewrap starts, notes each
canary token the rewrap replaces, and adds the new token (sealed, beside the old one) to the
register *before* the rewritten data is committed or moved into place: a crash in between leaves
an extra registered token that never appears, never an unregistered canary.

The old token stays registered: backups and exports made before the rewrap still hold it, and a
touch of one of those is still a touch.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from keys.canary_register import (
    CanaryField,
    CanaryRegister,
    CanaryRegisterError,
    seal_field,
    unseal_field,
)

if TYPE_CHECKING:
    from keys.keyring import Keyring

__all__ = ["CanaryFollower"]


class CanaryFollower:
    """Notes canary tokens a rewrap replaces; `flush()` registers their successors."""

    def __init__(self, register: CanaryRegister, keyring: Keyring) -> None:
        """Open `register` now; CanaryRegisterError if it cannot be read.

        Refusing then, before any token is replaced, is the point: a rewrap must not disarm the
        tripwire silently. A canary whose sealed value no longer opens is skipped: nobody can
        read its tokens, so the rewrap cannot replace them either.
        """
        self._register = register
        self._keyring = keyring
        self._canaries: dict[str, tuple[str, str, str]] = {}
        for entry in register.read():
            for field in entry.fields:
                try:
                    token = unseal_field(keyring, entry.practice, field)
                except CanaryRegisterError:
                    continue
                self._canaries[token] = (entry.canary_id, entry.practice, field.field_class)
        self._pending: dict[str, list[CanaryField]] = defaultdict(list)
        #: Canary tokens registered under their new key so far (for the command's report).
        self.followed = 0

    def __repr__(self) -> str:
        return f"<CanaryFollower canaries={len(self._canaries)} followed={self.followed}>"

    def __bool__(self) -> bool:
        """True when the register holds at least one canary token this keyring can open."""
        return bool(self._canaries)

    def rewrapped(self, old: str, new: str) -> None:
        """A rewrap replaced `old` by `new`: remember `new` when `old` is a canary token."""
        known = self._canaries.get(old)
        if known is None or new == old:
            return
        canary_id, practice, field_class = known
        self._pending[canary_id].append(seal_field(self._keyring, practice, field_class, new))
        self._canaries[new] = known

    def flush(self) -> None:
        """Add every noted successor to the register (one locked, atomic write); then forget them.

        Call before the rewritten data is committed: a failure here (CanaryRegisterError) must
        stop the rewrap, so that no canary token is replaced without its successor registered.
        """
        if not self._pending:
            return
        additions = {canary: tuple(fields) for canary, fields in self._pending.items()}
        self._register.add_fields(additions)
        self.followed += sum(len(fields) for fields in additions.values())
        self._pending.clear()

"""The keyring a proxy serves with while its KEK cannot be used: no keys, and it says why.

When a KEK in an HSM or KMS stops working (token pulled, key disabled, role revoked), the proxy
drops its data keys instead of serving on with the copies in memory (proxy.runtime.seal): that
is what makes revoking the KEK an off switch. `SealedKeyring` is that empty keyring. Every token
masks (its reason code in the integrity alerts is `kek-unavailable`, not a forged `unknown-kid`)
and every encryption is refused with a message that names the cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.errors import KeyringError
from keys.keyring import Keyring
from keys.token_format import malformed_reason

if TYPE_CHECKING:
    from keys.keyring import KeyInfo

__all__ = ["SealedKeyring", "sealed_keyring"]


class SealedKeyring(Keyring):
    """A keyring without keys because the KEK is unavailable (build with `sealed_keyring`)."""

    __slots__ = ()

    def primary(self, practice: str) -> KeyInfo:
        """Always refused: nothing may be encrypted while the KEK cannot be used."""
        raise KeyringError(
            f"practice {practice!r} cannot be encrypted for now: the KEK cannot be used, so the "
            "proxy holds no keys (see the kek_unavailable alert)"
        )

    def diagnose(self, token: str) -> str:
        """`kek-unavailable` for every well-formed token (the alert's reason code)."""
        return malformed_reason(token) or "kek-unavailable"


def sealed_keyring() -> SealedKeyring:
    """An empty SealedKeyring."""
    ring = SealedKeyring.from_material([])
    if not isinstance(ring, SealedKeyring):  # from_material builds `cls`; never taken
        raise TypeError(type(ring).__name__)
    return ring

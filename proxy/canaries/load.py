"""Open the canary register with the current keyring: the scanner a pipeline searches with.

Run at start (a register that cannot be read stops the start: the operator asked for a
tripwire, and must not believe it is armed when it is not) and on every reload (refused, the
previous scanner stays; a reload also follows a key rotation). One entry whose sealed value no
longer opens (its practice shredded, its key retired) is left out with a warning naming the
canary: its tokens cannot be read by anyone any more, so it can no longer be touched either.

A deterministic canary token under a key that is no longer primary is also searched for as the
token its value gets under the primary key now (a write of the value after a rotation).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from keys.canary_register import CanaryRegister, CanaryRegisterError, canaries_path, unseal_field
from keys.errors import InvalidToken, KeyringError
from keys.token_format import MODE_DETERMINISTIC
from proxy.canaries.scan import CanaryHit, CanaryScanner

if TYPE_CHECKING:
    from keys.keyring import Keyring
    from keys.settings import KeySettings

__all__ = ["load_canaries"]

_log = logging.getLogger("phi_proxy")


def load_canaries(settings: KeySettings, keyring: Keyring) -> CanaryScanner:
    """The scanner for the register `settings` name; CanaryRegisterError if it is unusable."""
    path = canaries_path(settings)
    tokens: dict[str, CanaryHit] = {}
    for entry in CanaryRegister(path).read():
        for field in entry.fields:
            try:
                token = unseal_field(keyring, entry.practice, field)
            except CanaryRegisterError as exc:
                _log.warning(
                    "canary left out: its sealed token does not open with these keys",
                    extra={
                        "fields": {
                            "canary": entry.canary_id,
                            "field_class": field.field_class,
                            "reason": str(exc),
                            "file": str(path),
                        }
                    },
                )
                continue
            for spelling in (token, _current_deterministic(keyring, token)):
                if spelling is not None:
                    kid = spelling.split(".", 3)[2]
                    hit = CanaryHit(entry.canary_id, entry.practice, field.field_class, kid)
                    tokens[spelling] = hit
    return CanaryScanner(tokens)


def _current_deterministic(keyring: Keyring, token: str) -> str | None:
    """What writing a deterministic canary's value now gives, when its key is no longer primary.

    After a rotation, the proxy encrypts a deterministic value under the new key: a write of
    the canary's value (`how: sent`) would otherwise go unseen until new canaries are issued.
    """
    mode, kid = token.split(".", 3)[1:3]
    practice = keyring.practice_of(kid)
    if mode != MODE_DETERMINISTIC or practice is None:
        return None
    try:
        if keyring.primary(practice).kid == kid:
            return None
        opened = keyring.open(token)
        return keyring.encrypt(practice, opened.field_class, opened.plaintext, deterministic=True)
    except (InvalidToken, KeyringError):  # no active key (shredded) or a token that no longer opens
        return None

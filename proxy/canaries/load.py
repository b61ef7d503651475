"""Open the canary register with the current keyring: the scanner a pipeline searches with.

Run at start (a register that cannot be read stops the start: the operator asked for a
tripwire, and must not believe it is armed when it is not) and on every reload (refused, the
previous scanner stays). One entry whose sealed value no longer opens (its practice shredded,
its key retired) is left out with a warning naming the canary: its tokens cannot be read by
anyone any more, so it can no longer be touched either.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from keys.canary_register import CanaryRegister, CanaryRegisterError, canaries_path, unseal_field
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
            kid = token.split(".", 3)[2]
            tokens[token] = CanaryHit(entry.canary_id, entry.practice, field.field_class, kid)
    return CanaryScanner(tokens)

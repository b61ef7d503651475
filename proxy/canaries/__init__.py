"""Canary patients: made-up records planted in the portal as tripwires (docs/canaries.md).

`load_canaries` opens the register (keys.canary_register) with the keyring; `CanaryScanner`
finds registered tokens in the bytes passing through; `canary_touched` is the one place every
touch is recorded (the audit event's `canary` list, and from it the `canary_touched` alert).
"""

from __future__ import annotations

from proxy.canaries.load import load_canaries
from proxy.canaries.scan import NO_CANARIES, CanaryHit, CanaryScanner
from proxy.canaries.touch import canary_touched, read_touches, sent_touches, watching_read

__all__ = [
    "NO_CANARIES",
    "CanaryHit",
    "CanaryScanner",
    "canary_touched",
    "load_canaries",
    "read_touches",
    "sent_touches",
    "watching_read",
]

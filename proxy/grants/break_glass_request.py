"""Reading a break-glass request: the `X-PHI-Break-Glass` reason, and the claim that allows it.

Both are pure functions of what the client sent and what its verified token says, so the
request path and the tests (Hypothesis: tests/grants/test_break_glass_request.py) share them.
The reason is evidence a security officer reads later: it must say something (at least 20
characters after trimming), fit on a screen (at most 500), and carry no control or invisible
formatting characters that could hide or rewrite text in a terminal or a report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "BREAK_GLASS_HEADER",
    "MAX_REASON",
    "MIN_REASON",
    "ReasonRefused",
    "claim_allows",
    "parse_reason",
]

BREAK_GLASS_HEADER: Final = "X-PHI-Break-Glass"
MIN_REASON: Final = 20
MAX_REASON: Final = 500


class ReasonRefused(ValueError):
    """The break-glass reason cannot be accepted; the message says what to send instead."""


def parse_reason(values: Sequence[str]) -> str:
    """The reason the header values carry, trimmed; ReasonRefused unless exactly one is usable."""
    if len(values) != 1:
        raise ReasonRefused(
            f"send {BREAK_GLASS_HEADER} once, with one reason (it was sent {len(values)} times)"
        )
    reason = values[0].strip()
    if not reason.isprintable():
        raise ReasonRefused(
            f"the {BREAK_GLASS_HEADER} reason contains control or invisible characters; write it "
            "as plain text on one line"
        )
    if len(reason) < MIN_REASON:
        raise ReasonRefused(
            f"the {BREAK_GLASS_HEADER} reason is {len(reason)} characters; write at least "
            f"{MIN_REASON} saying why this emergency needs the record (e.g. 'unconscious patient "
            "in ER, allergy history needed'), without patient identifiers"
        )
    if len(reason) > MAX_REASON:
        raise ReasonRefused(
            f"the {BREAK_GLASS_HEADER} reason is {len(reason)} characters; keep it to "
            f"{MAX_REASON} at most"
        )
    return reason


def _claim(claims: Mapping[str, object], name: str) -> object:
    """The claim `name`; a dotted name is followed into nested objects when not found as is."""
    if name in claims:
        return claims[name]
    found: object = claims
    for part in name.split("."):
        if not isinstance(found, dict) or part not in found:
            return None
        found = found[part]
    return found


def claim_allows(claims: Mapping[str, object], claim: str, value: str) -> bool:
    """True when the token's `claim` carries `value`.

    A list must contain it; a string must be it, or hold it as one space-separated word (as
    `scope` is written). Anything else (a number, an object, no claim) never allows.
    """
    found = _claim(claims, claim)
    if isinstance(found, str):
        return found == value or value in found.split(" ")
    if isinstance(found, list):
        return any(isinstance(item, str) and item == value for item in found)
    return False

"""What a caller sees instead of a value they may not read.

Four kinds, chosen per field class: fixed text, JSON null, nothing at all (the member is left
out: FHIR forbids null), or the last N letters/digits of the decrypted value inside a template
(`***-**-6789`). The last-N form is computed from the value just decrypted, so no plaintext
fragment is ever stored next to the ciphertext. Where a value cannot be null or left out (text
bodies, object keys, text around a token) the null and remove masks are the redacted text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from proxy.transform.settings import FieldClassSettings, KeepLastMask, TextMask
from proxy.transform.splice import REMOVED, Removed

__all__ = ["FixedMask", "KeepLast", "Mask", "NullMask", "RemoveMask", "compile_mask"]

_PLACEHOLDER: Final = "{last}"


@dataclass(frozen=True, slots=True)
class FixedMask:
    """Always the same text."""

    text: str
    needs_value: bool = False

    def for_json(self, _value: str | None) -> str | Removed | None:
        """The mask as a JSON value."""
        return self.text

    def for_text(self, _value: str | None) -> str:
        """The mask inside a text body or an object key."""
        return self.text


@dataclass(frozen=True, slots=True)
class NullMask:
    """JSON null; where a string is required (text bodies, keys), the redacted text."""

    redacted_text: str
    needs_value: bool = False

    def for_json(self, _value: str | None) -> str | Removed | None:
        """The mask as a JSON value."""
        return None

    def for_text(self, _value: str | None) -> str:
        """The mask inside a text body or an object key."""
        return self.redacted_text


@dataclass(frozen=True, slots=True)
class RemoveMask:
    """No value: the member is left out; where that cannot be (text, keys), the redacted text."""

    redacted_text: str
    needs_value: bool = False

    def for_json(self, _value: str | None) -> str | Removed | None:
        """`REMOVED`: the walk leaves the member or element out (`splice`)."""
        return REMOVED

    def for_text(self, _value: str | None) -> str:
        """The mask inside a text body or an object key."""
        return self.redacted_text


@dataclass(frozen=True, slots=True)
class KeepLast:
    """`before + last N letters/digits + after`; `fallback` when unknown or too short."""

    keep: int
    before: str
    after: str
    min_length: int
    fallback: str
    needs_value: bool = True

    def for_text(self, value: str | None) -> str:
        """The mask for `value` (None when the token could not be opened)."""
        if value is None:
            return self.fallback
        kept = [c for c in value if c.isalnum()]
        if len(kept) < self.min_length:
            return self.fallback
        return self.before + "".join(kept[-self.keep :]) + self.after

    def for_json(self, value: str | None) -> str | Removed | None:
        """Same as for_text: the result is always a string."""
        return self.for_text(value)


Mask = FixedMask | NullMask | RemoveMask | KeepLast


def compile_mask(settings: FieldClassSettings | None, redacted_text: str) -> Mask:
    """Build the mask for one class (None: a class the config does not know → redacted text)."""
    if settings is None:
        return FixedMask(redacted_text)
    mask = settings.mask
    if mask is None:
        return NullMask(redacted_text)
    if mask == "remove":
        return RemoveMask(redacted_text)
    if isinstance(mask, TextMask):
        return FixedMask(mask.text)
    assert isinstance(mask, KeepLastMask)  # noqa: S101 - exhaustive union, for mypy
    before, _, after = mask.template.partition(_PLACEHOLDER)
    return KeepLast(
        keep=mask.keep_last,
        before=before,
        after=after,
        min_length=mask.min_length or 2 * mask.keep_last,
        fallback=mask.fallback,
    )

r"""How an object key is compared with a configured field name, and what could hide one.

Key names are compared after normalization, so a portal (or an attacker who controls some of
its output) cannot dodge a selector by spelling `ssn` as `"\\u0073sn"`, `SSN`, `Ssn` or in
full-width letters (U+FF53 …): JSON escapes are decoded by the parser, then NFKC → case-fold →
NFKC (the fixed point Unicode recommends for caseless identifier matching), then, when
`fold_separators` is on, the separators `_ - . space` are dropped, so `socialSecurityNumber`,
`social-security-number` and `social_security_number` are one name.

The fast path (`FieldPolicy.may_need_transform`) has to prove from raw bytes that no key can
normalize to a selected name. For ASCII that is a case-insensitive substring search (NFKC and
case-folding of ASCII are `str.lower`). For everything else we precompute, once per process,
the set of non-ASCII code points whose normalization contains an ASCII character (full-width
letters, the long s U+017F, the Kelvin sign, mathematical letters, …): a body without any of
them and without a JSON escape that decodes to one cannot spell an ASCII name in disguise.
"""

from __future__ import annotations

import array
import functools
import re
import sys
import unicodedata
from typing import Final

__all__ = [
    "SEPARATORS",
    "ascii_revealing_pattern",
    "ascii_revealing_ranges",
    "is_ascii_revealing",
    "normalize_name",
]

#: Dropped from names when `fold_separators` is on.
SEPARATORS: Final = "_-. "
_DROP_SEPARATORS: Final = str.maketrans("", "", SEPARATORS)
_MAX_CODE_POINT: Final = 0x110000
_SURROGATES: Final = range(0xD800, 0xE000)


def _nfkc_casefold(text: str) -> str:
    if text.isascii():
        return text.lower()  # NFKC is the identity on ASCII and case-folding is lower()
    nfkc = unicodedata.normalize
    return nfkc("NFKC", nfkc("NFKC", text).casefold())


def normalize_name(name: str, *, fold_separators: bool) -> str:
    """The form in which a key and a configured name are compared."""
    folded = _nfkc_casefold(name)
    return folded.translate(_DROP_SEPARATORS) if fold_separators else folded


def is_ascii_revealing(code_point: int) -> bool:
    """True if this non-ASCII code point normalizes to something containing ASCII."""
    return code_point in _ascii_revealing_set()


#: Code points per block of `_ascii_revealing_set`'s scan.
_BLOCK: Final = 64


@functools.cache
def _ascii_revealing_set() -> frozenset[int]:
    """Every non-ASCII code point whose NFKC-casefold form contains an ASCII character.

    Computed once per process, on first use (when the policy is compiled), from the running
    interpreter's Unicode tables, so it never disagrees with `normalize_name`. Blocks of code
    points are first tested whole (~0.1 s for all of Unicode instead of ~0.4 s one by one): a
    block whose NFKD form and case fold are both the block itself holds only characters that
    normalize to themselves. NFKD replaces each character by its full decomposition (at least
    one character long, and its own decomposition) and then only reorders combining marks, so
    a block it leaves unchanged kept its length and its characters: one character decomposed
    into another would have added a copy of that other one. Case folding works one character
    at a time and never shortens one, so the same holds for it. Any other block is examined
    character by character; tests/transform/test_properties.py checks the result against the
    one-by-one definition on the interpreter that runs the tests.
    """
    everything = _all_non_ascii_code_points()
    found: list[int] = []
    for offset in range(0, len(everything), _BLOCK):
        block = everything[offset : offset + _BLOCK]
        if unicodedata.normalize("NFKD", block) == block and block.casefold() == block:
            continue
        found.extend(ord(char) for char in block if _reveals_ascii(char))
    return frozenset(found)


def _all_non_ascii_code_points() -> str:
    """U+0080 to U+10FFFF without the surrogates, as one string (built in C, ~60 ms)."""
    points = array.array("I", range(0x80, _SURROGATES.start))
    if points.itemsize != 4:  # noqa: PLR2004 - UTF-32 code units; checked even under -O
        raise RuntimeError("array typecode 'I' is not 4 bytes here: cannot build the name table")
    points.extend(range(_SURROGATES.stop, _MAX_CODE_POINT))
    return points.tobytes().decode("utf-32-le" if sys.byteorder == "little" else "utf-32-be")


def _reveals_ascii(char: str) -> bool:
    # A character with no decomposition that is its own case fold normalizes to itself.
    if not unicodedata.decomposition(char) and char.casefold() == char:
        return False
    return any(ord(c) < 0x80 for c in _nfkc_casefold(char))  # noqa: PLR2004 - ASCII bound


@functools.cache
def ascii_revealing_ranges() -> tuple[tuple[int, int], ...]:
    """`_ascii_revealing_set` as sorted inclusive (first, last) code point ranges."""
    ranges: list[tuple[int, int]] = []
    for point in sorted(_ascii_revealing_set()):
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    return tuple(ranges)


@functools.cache
def ascii_revealing_pattern() -> re.Pattern[str]:
    """A compiled character class matching any code point of `_ascii_revealing_set`."""
    ranges = ascii_revealing_ranges()
    parts = "".join(
        re.escape(chr(lo)) if lo == hi else f"{re.escape(chr(lo))}-{re.escape(chr(hi))}"
        for lo, hi in ranges
    )
    return re.compile(f"[{parts}]")

"""JSON spelled many ways: a formatter whose choices depend only on a node's path.

Two renderings of trees that differ only in some values (`replaced`) therefore agree byte for
byte everywhere else: what the byte-fidelity and core-parity tests need.
"""

from __future__ import annotations

import random

import orjson
from hypothesis import strategies as st

KEYS = st.sampled_from(["a", "b", "ssn", "value", "Zé", "x\ny", 'q"t', "\u2028", ""])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
)
TREES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
    max_leaves=16,
)
_BLANKS = ["", " ", "  ", "\n", "\n    ", "\t", "\r\n"]


def _number(value: float, rng: random.Random) -> bytes:
    """One of several spellings of a number (exponents, trailing zeros) that parse alike."""
    if isinstance(value, int):
        return rng.choice([str(value), f"{value}E0", f"{value}e+0"]).encode()
    text = orjson.dumps(value).decode()
    if "e" not in text.lower() and "." in text:
        text = rng.choice([text, text + "0", text + "00"])
    return text.encode()


def _string(value: str, rng: random.Random) -> bytes:
    r"""A string with some characters written as \uXXXX escapes."""
    out = ['"']
    for char in value:
        if char in '"\\' or ord(char) < 0x20 or rng.random() < 0.3:
            out.append("".join(f"\\u{unit:04x}" for unit in _utf16(char)))
        else:
            out.append(char)
    out.append('"')
    return "".join(out).encode()


def _utf16(char: str) -> list[int]:
    raw = char.encode("utf-16-be")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def render(node, seed: int, replaced: dict[tuple, object] | None = None, path=()) -> bytes:
    """`node` as JSON text, spelled by choices seeded from its path; replaced nodes as orjson."""
    if replaced is not None and path in replaced:
        return orjson.dumps(replaced[path])
    rng = random.Random(f"{seed}:{path!r}")
    blank = lambda: rng.choice(_BLANKS).encode()  # noqa: E731 - a tiny local helper
    if isinstance(node, dict):
        names = replaced.get(("keys", *path), {}) if replaced is not None else {}
        members = [
            blank()
            + _renamed(names, key, _string(key, rng))
            + blank()
            + b":"
            + blank()
            + render(item, seed, replaced, (*path, key))
            + blank()
            for key, item in node.items()
        ]
        return b"{" + b",".join(members) + blank() + b"}"
    if isinstance(node, list):
        items = [
            blank() + render(item, seed, replaced, (*path, i)) + blank()
            for i, item in enumerate(node)
        ]
        return b"[" + b",".join(items) + blank() + b"]"
    if isinstance(node, str):
        return _string(node, rng)
    if node is None or isinstance(node, bool):
        return orjson.dumps(node)
    return _number(node, rng)


def _renamed(names: dict[str, str], key: str, spelled: bytes) -> bytes:
    """The key as spelled, or its new name (spelled anyway, so later choices stay the same)."""
    return orjson.dumps(names[key]) if key in names else spelled

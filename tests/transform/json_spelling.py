"""JSON spelled many ways: a formatter whose choices depend only on a node's path.

Two renderings of trees that differ only in some values (`replaced`) therefore agree byte for
byte everywhere else: what the byte-fidelity and core-parity tests need. A value replaced by
`REMOVED` is left out with its separator as docs/field-policy.md says (written here from the
rendered pieces, independently of `splice`): a run of removed members followed by a kept one
goes from the run's first member up to that one; a run at the end, from the end of the last
kept member; a run of every member, from the first member's start to the last one's end.
"""

from __future__ import annotations

import random

import orjson
from hypothesis import strategies as st

from proxy.transform.splice import REMOVED

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
        new = replaced[path]
        return b"" if new is REMOVED else orjson.dumps(new)  # a removed member is cut anyway
    rng = random.Random(f"{seed}:{path!r}")
    blank = lambda: rng.choice(_BLANKS).encode()  # noqa: E731 - a tiny local helper
    if isinstance(node, dict):
        names = replaced.get(("keys", *path), {}) if replaced is not None else {}
        members = []
        for key, item in node.items():
            lead = blank()
            spelled = _renamed(names, key, _string(key, rng))
            core = spelled + blank() + b":" + blank() + render(item, seed, replaced, (*path, key))
            members.append((lead, core, blank(), (*path, key)))
        return b"{" + _join(members, replaced) + blank() + b"}"
    if isinstance(node, list):
        items = [
            (blank(), render(item, seed, replaced, (*path, i)), blank(), (*path, i))
            for i, item in enumerate(node)
        ]
        return b"[" + _join(items, replaced) + blank() + b"]"
    if isinstance(node, str):
        return _string(node, rng)
    if node is None or isinstance(node, bool):
        return orjson.dumps(node)
    return _number(node, rng)


def _join(members: list[tuple[bytes, bytes, bytes, tuple]], replaced: dict | None) -> bytes:
    """Members (blanks before, the member, blanks after, its path) joined by commas.

    Removed ones are cut in runs as the module docstring says.
    """
    pieces: list[bytes] = []  # lead, core, trail for each member, "," between
    gone = [replaced is not None and replaced.get(p) is REMOVED for *_, p in members]
    for number, (lead, core, trail, _) in enumerate(members):
        pieces += ([b","] if number else []) + [lead, core, trail]
    cut = [False] * len(pieces)
    core_at = [4 * number + 1 for number in range(len(members))]  # index of each core piece
    number = 0
    while number < len(members):
        if not gone[number]:
            number += 1
            continue
        last = number
        while last + 1 < len(members) and gone[last + 1]:
            last += 1
        if last + 1 < len(members):  # a kept member follows: up to its start
            span = range(core_at[number], core_at[last + 1])
        elif number > 0:  # the run ends the container: from the last kept member's end
            span = range(core_at[number - 1] + 1, core_at[last] + 1)
        else:  # every member
            span = range(core_at[0], core_at[last] + 1)
        for index in span:
            cut[index] = True
        number = last + 1
    return b"".join(piece for piece, dropped in zip(pieces, cut, strict=True) if not dropped)


def _renamed(names: dict[str, str], key: str, spelled: bytes) -> bytes:
    """The key as spelled, or its new name (spelled anyway, so later choices stay the same)."""
    return orjson.dumps(names[key]) if key in names else spelled

"""A raw DEFLATE stream whose compressed bytes are all 7-bit ASCII (so also valid UTF-8).

Found in review: such a stream, labelled `Content-Encoding: identity` then `deflate`, passed the
proxy's fast path as "JSON without selected keys" and the client inflated legacy plaintext. The
stream uses fixed-Huffman blocks; a breadth-first search picks literals, empty blocks and runs
of spaces between JSON tokens until every byte has its high bit clear.
"""

from __future__ import annotations

import json
from collections import deque

_EOB = [0] * 7  # end-of-block, code 256 (7 zero bits)
_FIXED_BLOCK = [0, 1, 0]  # BFINAL=0, BTYPE=01 (fixed Huffman), LSB first
_FINAL_BLOCK = [1, 1, 0]
_EMPTY_BLOCK = _EOB + _FIXED_BLOCK
_LONG_RUNS = {265: 11, 266: 13, 267: 15, 268: 17}  # length codes with one extra bit


def _msb(value: int, width: int) -> list[int]:
    return [(value >> (width - 1 - i)) & 1 for i in range(width)]


def _lsb(value: int, width: int) -> list[int]:
    return [(value >> i) & 1 for i in range(width)]


def _literal(char: int) -> list[int]:
    return _msb(0x30 + char, 8)  # fixed-Huffman literals 0..143


def _space_run(length: int) -> list[int]:
    """Repeat the previous space `length` times (distance 1)."""
    if 3 <= length <= 10:
        return _msb(length - 2, 7) + _msb(0, 5)
    for code, start in _LONG_RUNS.items():
        if start <= length <= start + 1:
            return _msb(code - 256, 7) + _lsb(length - start, 1) + _msb(0, 5)
    raise ValueError(length)


def _fits(bits: list[int], pos: int) -> bool:
    """True when no set bit lands on a byte's high bit."""
    return all(not (bit and (pos + i) % 8 == 7) for i, bit in enumerate(bits))


def _chars(doc: object) -> tuple[str, list[bool]]:
    """Compact JSON text and, per character, whether whitespace may follow it."""
    text = json.dumps(doc, separators=(",", ":"))
    gap_after: list[bool] = []
    in_string = escaped = False
    for char in text:
        if in_string:
            closes = not escaped and char == '"'
            escaped = not escaped and char == "\\"
            in_string = not closes
            gap_after.append(closes)
        else:
            in_string = char == '"'
            gap_after.append(not in_string)
    return text, gap_after


def _moves(text: str, gap_after: list[bool], state: tuple[int, int, bool]):
    index, _, after_space = state
    if index < len(text):
        yield (index + 1, False), _literal(ord(text[index]))
    yield (index, after_space), _EMPTY_BLOCK
    if index == 0 or gap_after[index - 1]:
        yield (index, True), _literal(0x20)
        if after_space:
            for length in range(3, 19):
                yield (index, True), _space_run(length)


def _search(text: str, gap_after: list[bool]) -> list[int]:
    start = (0, len(_FIXED_BLOCK) % 8, False)
    previous: dict[tuple[int, int, bool], tuple[tuple[int, int, bool], list[int]] | None] = {
        start: None
    }
    queue = deque([start])
    tail = _EOB + _FINAL_BLOCK + _EOB
    while queue:
        state = queue.popleft()
        if state[0] == len(text) and _fits(tail, state[1]):
            pieces = [tail]
            while (step := previous[state]) is not None:
                state, bits = step
                pieces.append(bits)
            return [bit for piece in [_FIXED_BLOCK, *reversed(pieces)] for bit in piece]
        for (index, after_space), bits in _moves(text, gap_after, state):
            if not _fits(bits, state[1]):
                continue
            nxt = (index, (state[1] + len(bits)) % 8, after_space)
            if nxt not in previous:
                previous[nxt] = (state, bits)
                queue.append(nxt)
    raise RuntimeError("no ASCII-only encoding found")


def ascii_deflate(doc: object) -> bytes:
    """Raw DEFLATE (no zlib header) of `doc` as JSON, every compressed byte below 0x80."""
    bits = _search(*_chars(doc))
    bits += [0] * (-len(bits) % 8)
    return bytes(
        sum(bit << j for j, bit in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8)
    )

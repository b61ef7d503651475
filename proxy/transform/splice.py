"""Write a JSON text back with only the decided values replaced: every other byte as it came.

The walks (`walk.Walk` for responses, `request._Walk` for requests) never rebuild a document.
They record what changes in an `Edits`: a new value for a member or element (or `REMOVED`: leave
it out), a new spelling for an object key, and which containers hold a change somewhere below
them. `splice` then copies the original bytes and writes only those values, each as
`orjson.dumps` writes it. Whitespace, key order, number spelling (`8E+1` stays `8E+1`, a FHIR
decimal's precision) and the escapes of untouched strings come back byte for byte.

Members left out go in runs of neighbours, each run with exactly one separator, so the rest
keeps its bytes and the text stays JSON: a run followed by a kept member is cut from the run's
first member (its key's quote, or the element) up to that kept member; a run that ends the
container is cut from the end of the last kept member to the end of the run; a run of every
member is cut from the first member's start to the last one's end (brackets and the blanks
inside them stay). `{"a": 1, "b": 2}` without b is `{"a": 1}`, without a `{"b": 2}`.

The document must be the one `parse_json` returned for exactly these bytes: members are found
by position, in the order the parser kept them (it refuses duplicate keys, so there is one
member per key), and containers without a change below them are skipped, not walked.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

import orjson

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["REMOVED", "Edits", "Removed", "splice"]

#: A JSON string (the body is valid JSON: no need to validate escapes again).
_STRING: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"')
#: Everything up to and including the next bracket outside strings: one step of a skip.
_TO_BRACKET: Final = re.compile(rb'(?:[^"\[\]{}]++|"[^"\\]*+(?:\\.[^"\\]*+)*+")*+[\[\]{}]')
#: A number, true, false or null: up to the next delimiter.
_SCALAR: Final = re.compile(rb"[^ \t\r\n,\]}]+")
#: Blanks, the "{" or a ",", then an object member's name, ":" and blanks up to its value.
_MEMBER: Final = re.compile(
    rb'[ \t\r\n]*[{,][ \t\r\n]*("[^"\\]*+(?:\\.[^"\\]*+)*+")[ \t\r\n]*:[ \t\r\n]*'
)
#: Blanks, the "[" or a ",", and blanks up to an array element.
_ELEMENT: Final = re.compile(rb"[ \t\r\n]*[\[,][ \t\r\n]*")
_BLANKS: Final = re.compile(rb"[ \t\r\n]*")
_OPENERS: Final = frozenset(b"[{")
_QUOTE: Final = ord('"')


class Removed:
    """The type of `REMOVED` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REMOVED"


#: An `Edits.values` entry that leaves its member or element out of the output.
REMOVED: Final = Removed()


class Edits:
    """What a walk changed in one parsed document, keyed by the containers' identity.

    `values[id(container), key or index]` is the new JSON value of that member or element, or
    `REMOVED` to leave it out; `keys[id(object)][old key]` the new spelling of a key; `dirty`
    the containers with any change at or below them; `root` the new top-level value (when the
    document itself is one scalar that changed). Identities are stable because the walk keeps
    the document alive.
    """

    __slots__ = ("dirty", "keys", "root", "values")

    def __init__(self) -> None:
        self.values: dict[tuple[int, str | int], object] = {}
        self.keys: dict[int, dict[str, str]] = {}
        self.dirty: set[int] = set()
        self.root: tuple[object] | None = None

    def __bool__(self) -> bool:
        return bool(self.values or self.keys or self.root is not None)

    def count(self) -> int:
        """A number that grows with every recorded change (for dirty marking)."""
        return len(self.values) + len(self.keys)


def _value_end(body: bytes, pos: int) -> int:
    """Where the JSON value starting at `pos` ends (a container: one regex step per bracket)."""
    first = body[pos]
    if first == _QUOTE:
        match = _STRING.match(body, pos)
    elif first not in _OPENERS:
        match = _SCALAR.match(body, pos)
    else:
        depth = 1
        pos += 1
        while depth:
            match = _TO_BRACKET.match(body, pos)
            assert match is not None  # noqa: S101 - the body parsed as JSON
            pos = match.end()
            depth += 1 if body[pos - 1] in _OPENERS else -1
        return pos
    assert match is not None  # noqa: S101 - the body parsed as JSON
    return match.end()


class _Splicer:
    __slots__ = ("body", "edits", "last", "pieces")

    def __init__(self, body: bytes, edits: Edits) -> None:
        self.body = body
        self.edits = edits
        self.pieces: list[bytes] = []
        self.last = 0

    def replace(self, start: int, end: int, new: object) -> None:
        self.pieces += (self.body[self.last : start], orjson.dumps(new))
        self.last = end

    def drop(self, start: int, end: int) -> None:
        self.pieces.append(self.body[self.last : start])
        self.last = end

    def member(self, item: object, new: object, pos: int) -> int:
        """Handle `item` (to become `new`) starting at `pos`; returns where it ends."""
        if new is not _UNCHANGED:
            end = _value_end(self.body, pos)
            self.replace(pos, end, new)
            return end
        if id(item) in self.edits.dirty:
            return self.container(item, pos)
        return _value_end(self.body, pos)

    def container(self, value: object, pos: int) -> int:
        """Descend into the object or array at `pos` (it has a change below it); its end.

        Members marked REMOVED are left out in runs, as the module docstring says.
        """
        body = self.body
        values = self.edits.values
        container = id(value)
        renamed: dict[str, str] = {}
        members: Iterable[tuple[str | int, object]]
        if isinstance(value, dict):
            renamed = self.edits.keys.get(container, renamed)
            members, pattern, group, close = value.items(), _MEMBER, 1, b"}"
        else:
            assert isinstance(value, list)  # noqa: S101 - only containers are dirty
            members, pattern, group, close = enumerate(value), _ELEMENT, 0, b"]"
        run_start = -1  # where the run of removed members being passed over starts
        run_end = kept_end = -1
        for key, item in members:
            match = pattern.match(body, pos)
            assert match is not None  # noqa: S101 - the body parsed as JSON
            start = match.start(group) if group else match.end()
            new = values.get((container, key), _UNCHANGED)
            if new is REMOVED:
                pos = run_end = _value_end(body, match.end())
                if run_start < 0:
                    run_start = start
                continue
            if run_start >= 0:
                self.drop(run_start, start)
                run_start = -1
            if key in renamed:
                self.replace(match.start(1), match.end(1), renamed[key])
            pos = kept_end = self.member(item, new, match.end())
        if run_start >= 0:
            self.drop(run_start if kept_end < 0 else kept_end, run_end)
        # Only blanks stand between the last value and the closing bracket.
        return body.index(close, pos) + 1

    def result(self) -> bytes:
        self.pieces.append(self.body[self.last :])
        return b"".join(self.pieces)


_UNCHANGED: Final = object()


def splice(body: bytes, doc: object, edits: Edits) -> bytes:
    """`body` with the changes in `edits` written in; `body` itself if there are none."""
    if not edits:
        return body
    splicer = _Splicer(body, edits)
    start = _BLANKS.match(body).end()  # type: ignore[union-attr] # always matches
    if edits.root is not None:
        splicer.replace(start, _value_end(body, start), edits.root[0])
    else:
        splicer.container(doc, start)
    return splicer.result()

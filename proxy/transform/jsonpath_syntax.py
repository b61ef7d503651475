"""The syntax half of our JSONPath subset: grammar, parser, and the compiled form.

The grammar and why we do not use a library are in `proxy.transform.jsonpath`, which runs the
compiled paths during the walk; this module only turns text into `CompiledPath` or raises
`PathSyntaxError` naming the position.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CompiledPath",
    "Condition",
    "Normalize",
    "PathSyntaxError",
    "Scalar",
    "Step",
    "compile_path",
]

Scalar = str | int | float | bool | None
Normalize = Callable[[str], str]

_NAME: Final = re.compile(r"[^\W\d][\w-]*")
_NUMBER: Final = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_INDEX: Final = re.compile(r"0|[1-9]\d{0,8}")
_SPACE: Final = re.compile(r"\s*")
_KEYWORDS: Final[Mapping[str, Scalar]] = {"true": True, "false": False, "null": None}


class PathSyntaxError(ValueError):
    """A path expression outside the supported subset; the message names the position."""


@dataclass(frozen=True, slots=True)
class Condition:
    """One filter test on a candidate child: member at `members` exists / equals / differs."""

    members: tuple[str, ...]  # normalized names, outermost first
    op: str  # "exists" | "==" | "!="
    literal: Scalar = None


@dataclass(frozen=True, slots=True)
class Step:
    """One path step; exactly one of names / index / conditions is set, or none (wildcard)."""

    descendant: bool
    names: frozenset[str] | None = None
    index: int | None = None
    conditions: tuple[Condition, ...] | None = None


@dataclass(frozen=True, slots=True)
class CompiledPath:
    """A parsed path: its steps and the member names a document must contain to match."""

    source: str
    steps: tuple[Step, ...]
    #: `root_filter`: conditions the document root must meet for the path to apply at all
    #: (filters in a path test children only, never the root: RFC 9535).
    root: tuple[Condition, ...] | None = None

    def required_names(self) -> frozenset[str] | None:
        """Names of which at least one must occur as a key for the path to match anything.

        None when the path has no step that names a key (then any document may match). Used by
        the fast path: a body that contains none of these names cannot match this path.
        """
        named = [s.names for s in self.steps if s.names is not None]
        if not named:
            return None
        return min(named, key=lambda names: min(len(n) for n in names))


class _Parser:
    def __init__(self, text: str, normalize: Normalize) -> None:
        self.text = text
        self.pos = 0
        self.normalize = normalize

    def fail(self, what: str) -> PathSyntaxError:
        return PathSyntaxError(f"path {self.text!r}, position {self.pos}: {what}")

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        if match:
            self.pos = match.end()

    def regex(self, pattern: re.Pattern[str], what: str) -> str:
        match = pattern.match(self.text, self.pos)
        if not match:
            raise self.fail(f"expected {what}")
        self.pos = match.end()
        return match.group()

    def quoted(self) -> str:
        quote = self.text[self.pos : self.pos + 1]
        if quote not in {"'", '"'}:
            raise self.fail("expected a quoted string")
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            self.pos += 1
            if char == quote:
                return "".join(out)
            out.append(char)
        raise self.fail("unterminated string")

    def name(self) -> str:
        folded = self.normalize(self.regex(_NAME, "a member name"))
        if not folded:
            raise self.fail("a member name cannot be only separators")
        return folded

    def parse(self) -> CompiledPath:
        if not self.take("$"):
            raise self.fail("a path starts with $")
        steps: list[Step] = []
        while self.pos < len(self.text):
            descendant = self.take("..")
            if not descendant and not self.take(".") and not self.peek("["):
                raise self.fail("expected '.', '..' or '['")
            if self.take("["):
                steps.append(self.bracket(descendant=descendant))
            elif self.take("*"):
                steps.append(Step(descendant=descendant))
            else:
                steps.append(Step(descendant=descendant, names=frozenset({self.name()})))
        if not steps:
            raise self.fail("a path must select something below $")
        return CompiledPath(self.text, tuple(steps))

    def bracket(self, *, descendant: bool) -> Step:
        self.skip_space()
        if self.take("*"):
            step = Step(descendant=descendant)
        elif self.take("?"):
            step = Step(descendant=descendant, conditions=self.filter())
        elif self.peek("'") or self.peek('"'):
            names = {self.normalize(self.quoted())}
            self.skip_space()
            while self.take(","):
                self.skip_space()
                names.add(self.normalize(self.quoted()))
                self.skip_space()
            if "" in names:
                raise self.fail("a member name cannot be empty")
            step = Step(descendant=descendant, names=frozenset(names))
        else:
            step = Step(descendant=descendant, index=int(self.regex(_INDEX, "an index or name")))
        self.skip_space()
        if not self.take("]"):
            raise self.fail("expected ']'")
        return step

    def filter(self) -> tuple[Condition, ...]:
        self.skip_space()
        parenthesised = self.take("(")
        conditions = [self.condition()]
        while True:
            self.skip_space()
            if not self.take("&&"):
                break
            conditions.append(self.condition())
        if parenthesised and not self.take(")"):
            raise self.fail("expected ')'")
        return tuple(conditions)

    def condition(self) -> Condition:
        self.skip_space()
        if not self.take("@"):
            raise self.fail("a filter condition starts with @")
        members: list[str] = []
        while True:
            if self.take("."):
                members.append(self.name())
            elif self.take("["):
                self.skip_space()
                members.append(self.normalize(self.quoted()))
                self.skip_space()
                if not self.take("]"):
                    raise self.fail("expected ']'")
            else:
                break
        if not members:
            raise self.fail("a filter condition names a member, e.g. @.system")
        self.skip_space()
        for op in ("==", "!="):
            if self.take(op):
                self.skip_space()
                return Condition(tuple(members), op, self.literal())
        return Condition(tuple(members), "exists")

    def literal(self) -> Scalar:
        if self.peek("'") or self.peek('"'):
            return self.quoted()
        for word, value in _KEYWORDS.items():
            if self.take(word):
                return value
        number = self.regex(_NUMBER, "a string, number, true, false or null")
        return float(number) if any(c in number for c in ".eE") else int(number)


def compile_path(
    text: str, normalize: Normalize, *, root_filter: str | None = None
) -> CompiledPath:
    """Parse `text` (and the filter `root_filter` on the root, `@.resourceType == 'Condition'`).

    Raises PathSyntaxError naming the position of the first problem.
    """
    path = _Parser(text, normalize).parse()
    if root_filter is None:
        return path
    parser = _Parser(root_filter, normalize)
    root = parser.filter()
    parser.skip_space()
    if parser.pos < len(root_filter):
        raise parser.fail("expected '&&' or the end of the root filter")
    return CompiledPath(path.source, path.steps, root)

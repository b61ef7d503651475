"""A small, tested subset of JSONPath, compiled into the single walk over a document.

Why not a library: the well-kept Python JSONPath packages evaluate one expression at a time
over a whole document (one walk per selector, building match lists), while we need every
selector answered during the *one* walk that also finds tokens, with key names compared after
normalization. The subset below covers what field rules need, and nothing more:

    $                       the document root (every path starts with it)
    .name  ['name']         a child by key name (names compare normalized, like key selectors)
    ['a','b']               any of several names
    .*  [*]                 any child (object member or array element)
    [3]                     an array element by non-negative index
    ..name  ..*  ..[…]      the same, at any depth below
    [?(@.k == 'v')]         children that are objects whose member k equals 'v'; also !=,
                            bare existence [?(@.k)], nested @.a.b, && between conditions,
                            and the RFC 9535 spelling without parentheses [?@.k == 'v']

Literals: 'single' or "double" quoted strings (backslash escapes the quote and itself),
integers and decimals, true, false, null. String comparison is exact.

A path is compiled into a list of steps; `PathMatcher` runs all paths at once as a small NFA:
each node of the document carries the set of steps that are waiting to match one of its
children. A ".." step stays in the set all the way down.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CompiledPath",
    "Condition",
    "PathMatcher",
    "PathSyntaxError",
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
_MEMO_LIMIT: Final = 1024


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


def compile_path(text: str, normalize: Normalize) -> CompiledPath:
    """Parse `text`; raises PathSyntaxError naming the position of the first problem."""
    return _Parser(text, normalize).parse()


def _members(node: object, name: str, normalize: Normalize) -> list[object]:
    """Values of every member of `node` whose normalized key is `name` (none if not an object)."""
    if not isinstance(node, dict):
        return []
    return [value for key, value in node.items() if normalize(key) == name]


def _same(value: object, literal: Scalar) -> bool:
    """JSON equality: true/false/null only equal themselves, numbers by value, strings exactly."""
    if isinstance(value, bool) or isinstance(literal, bool) or value is None or literal is None:
        return value is literal
    if isinstance(value, str) or isinstance(literal, str):
        return isinstance(value, str) and value == literal
    return isinstance(value, int | float) and value == literal


def _holds(condition: Condition, child: object, normalize: Normalize) -> bool:
    nodes = [child]
    for name in condition.members:
        nodes = [found for node in nodes for found in _members(node, name, normalize)]
    if condition.op == "exists":
        return bool(nodes)
    if condition.op == "==":
        return any(_same(node, condition.literal) for node in nodes)
    # "!=": over-select rather than under-select (a selected plaintext value is masked unless
    # the caller may see it, so matching too much is the safe error).
    return not nodes or any(not _same(node, condition.literal) for node in nodes)


@dataclass(frozen=True, slots=True)
class _Shortcut:
    """Per state set: names that can trigger a match, and what survives when none does."""

    triggers: frozenset[str] | None  # None: some step matches without a name (wildcard…)
    survivors: tuple[int, ...]  # the ".." states, which carry on whatever the child is


class PathMatcher:
    """Runs every compiled path at once over one walk; states are small ints."""

    __slots__ = ("_classes", "_last", "_memo", "_normalize", "_steps", "initial")

    def __init__(self, paths: list[tuple[CompiledPath, str]], normalize: Normalize) -> None:
        steps: list[Step] = []
        classes: list[str] = []
        last: list[bool] = []
        initial: list[int] = []
        for path, field_class in paths:
            initial.append(len(steps))
            for number, step in enumerate(path.steps):
                steps.append(step)
                classes.append(field_class)
                last.append(number == len(path.steps) - 1)
        self._steps = tuple(steps)
        self._classes = tuple(classes)
        self._last = tuple(last)
        self._normalize = normalize
        self._memo: dict[tuple[int, ...], _Shortcut] = {}
        self.initial: tuple[int, ...] = tuple(initial)

    def _shortcut(self, states: tuple[int, ...]) -> _Shortcut:
        found = self._memo.get(states)
        if found is None:
            named = [self._steps[state].names for state in states]
            triggers = (
                None
                if any(names is None for names in named)
                else frozenset(n for names in named if names is not None for n in names)
            )
            survivors = tuple(s for s in states if self._steps[s].descendant)
            found = _Shortcut(triggers, survivors)
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            self._memo[states] = found
        return found

    def step(
        self, states: tuple[int, ...], key: str | None, index: int, child: object
    ) -> tuple[tuple[int, ...], str | None]:
        """States for `child` (reached by normalized `key`, or by `index` when key is None).

        Returns (the child's states, the field class if some path ends at the child). When
        several paths end at one node, the one listed first in the config wins.
        """
        shortcut = self._shortcut(states)
        if shortcut.triggers is not None and (key is None or key not in shortcut.triggers):
            return shortcut.survivors, None
        out: list[int] = []
        selected: int | None = None
        for state in states:
            step = self._steps[state]
            if step.descendant:
                out.append(state)
            if step.names is not None:
                hit = key is not None and key in step.names
            elif step.index is not None:
                hit = key is None and index == step.index
            elif step.conditions is not None:
                hit = all(_holds(c, child, self._normalize) for c in step.conditions)
            else:
                hit = True
            if not hit:
                continue
            if self._last[state]:
                if selected is None or state < selected:
                    selected = state
            else:
                out.append(state + 1)
        next_states = tuple(dict.fromkeys(out))
        return next_states, None if selected is None else self._classes[selected]

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

A path is compiled (`jsonpath_syntax`) into a list of steps; `PathMatcher` runs all paths at
once as a small NFA: each node of the document carries the set of steps that are waiting to
match one of its children. A ".." step stays in the set all the way down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.transform.jsonpath_syntax import (
    CompiledPath,
    Condition,
    PathSyntaxError,
    Step,
    compile_path,
)

if TYPE_CHECKING:
    from proxy.transform.jsonpath_syntax import Normalize, Scalar

__all__ = [
    "CompiledPath",
    "Condition",
    "PathMatcher",
    "PathSyntaxError",
    "Step",
    "compile_path",
]

_MEMO_LIMIT: Final = 1024


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

    __slots__ = ("_classes", "_guards", "_last", "_memo", "_normalize", "_steps", "initial")

    def __init__(self, paths: list[tuple[CompiledPath, str]], normalize: Normalize) -> None:
        steps: list[Step] = []
        classes: list[str] = []
        last: list[bool] = []
        initial: list[int] = []
        guards: list[tuple[int, tuple[Condition, ...]]] = []
        for path, field_class in paths:
            if path.root is not None:
                guards.append((len(steps), path.root))
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
        self._guards = tuple(guards)
        #: The root's states when no path has a root filter (else see `initial_for`).
        self.initial: tuple[int, ...] = tuple(initial)

    def initial_for(self, root: object) -> tuple[int, ...]:
        """The root's states: every path, less those whose `root_filter` the root fails."""
        if not self._guards:
            return self.initial
        failed = {
            state
            for state, conditions in self._guards
            if not all(_holds(c, root, self._normalize) for c in conditions)
        }
        return tuple(state for state in self.initial if state not in failed)

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

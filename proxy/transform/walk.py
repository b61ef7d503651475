"""The JSON walk: every value of one parsed document decided for one caller.

The rules (which value is selected, how tokens, legacy plaintext, object keys and selected
objects are decided) are listed in `proxy.transform.response`, which picks the bodies that get
walked. The walk never changes the parsed document: it records each decided value in an
`Edits`, and `splice` writes those into the original bytes (everything else stays as it came).
This is the pure-Python core: the reference the compiled core must agree with byte for byte.

A `remove` mask decides a value as `REMOVED`: its member or element is left out. An object or
array that had members and has none left is itself `REMOVED` from its parent (FHIR forbids
empty objects and arrays), all the way up; the document itself stays, emptied (`{}`), or, when
it is one removed value, becomes the redacted text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import orjson

from keys.token_format import TOKEN_PATTERN, TOKEN_PREFIX
from proxy.transform.errors import UnsafeBody
from proxy.transform.reveal import (
    UNKNOWN_PRACTICE,
    RecordPractice,
    RevealContext,
    allow_plaintext,
    decide_plaintext,
    reveal_text,
    reveal_token,
)
from proxy.transform.splice import REMOVED, Edits, Removed

if TYPE_CHECKING:
    from proxy.transform.policy import KeyRole, ObjectShape

__all__ = ["Walk"]

_NO_STATES: Final[tuple[int, ...]] = ()


def _scalar_text(value: object) -> str | None:
    """A record id / practice value as text; None if not a string or integer, or a token."""
    if isinstance(value, str):
        return None if TOKEN_PREFIX in value else value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _record_context(
    shape: ObjectShape,
    obj: dict[str, object],
    practice: RecordPractice,
    record_id: str | None,
) -> tuple[RecordPractice, str | None]:
    """The practice and record id in force inside `obj`.

    Two practice keys that disagree, or one that is not a string/integer, make the practice
    unknown (masking its plaintext) rather than falling back to an outer one.
    """
    own_practice: RecordPractice = None
    own_id: str | None = None
    for key, is_practice in shape.context:
        if is_practice:  # a key that is both a practice key and an id key counts as practice
            text = _scalar_text(obj[key])
            if text is None or own_practice not in (None, text):
                own_practice = UNKNOWN_PRACTICE
            else:
                own_practice = text
        elif own_id is None:  # an id key
            own_id = _scalar_text(obj[key])
    return (
        practice if own_practice is None else own_practice,
        record_id if own_id is None else own_id,
    )


def _refuse_too_deep(container: dict[str, object], depth: int, max_depth: int) -> None:
    """UnsafeBody("too_deep") if `container` (at `depth`) nests beyond `max_depth`."""
    stack: list[tuple[dict[str, object] | list[object], int]] = [(container, depth)]
    while stack:
        item, level = stack.pop()
        if level > max_depth:
            raise UnsafeBody("too_deep")
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))


class Walk:
    """One walk over one document; records every decided value in `edits`."""

    __slots__ = ("ctx", "edits", "matcher", "max_depth", "policy", "role")

    def __init__(self, ctx: RevealContext) -> None:
        self.ctx = ctx
        self.policy = ctx.policy
        self.role = ctx.policy.role
        self.matcher = ctx.policy.matcher
        self.max_depth = ctx.policy.max_depth
        self.edits = Edits()

    def document(self, doc: object) -> Edits:
        """Decide every value of `doc`; the edits that `splice` writes into its bytes."""
        result = self.value(doc, 0, None, None, self.matcher.initial_for(doc), None)
        if result is REMOVED:
            if not isinstance(doc, dict | list):  # an emptied document keeps its brackets
                self.edits.root = (self.policy.redacted_text,)
        elif result is not doc:
            self.edits.root = (result,)
        return self.edits

    def value(  # noqa: PLR0911, PLR0917 - hot path: positional args, early returns
        self,
        value: object,
        depth: int,
        practice: RecordPractice,
        record_id: str | None,
        states: tuple[int, ...],
        field_class: str | None,
    ) -> object:
        """Decide `value` (reached at `depth`, under `field_class` if selected); the new value."""
        if isinstance(value, str):
            if field_class is not None:
                return self.selected_string(value, field_class, practice, record_id)
            if TOKEN_PREFIX in value:
                return self.unselected_string(value, record_id, as_key=False)
            return value
        if isinstance(value, dict):
            return self.mapping(value, depth + 1, practice, record_id, states, field_class)
        if isinstance(value, list):
            return self.sequence(value, depth + 1, practice, record_id, states, field_class)
        if field_class is None or value is None:
            return value
        # A selected number or boolean: legacy plaintext.
        text = orjson.dumps(value).decode("ascii")
        decision = decide_plaintext(self.ctx, field_class, text, practice, record_id)
        if decision.mask is None:
            return value
        return decision.for_json()

    def selected_string(
        self, value: str, field_class: str, practice: RecordPractice, record_id: str | None
    ) -> object:
        """A string in a selected field: a token, else legacy plaintext of `field_class`."""
        if value.startswith(TOKEN_PREFIX):
            return reveal_token(self.ctx, value, record_id, as_json=True)
        decision = decide_plaintext(self.ctx, field_class, value, practice, record_id)
        if decision.mask is not None:
            return decision.for_json()
        if TOKEN_PREFIX in value:  # kept plaintext that also carries tokens
            return self.unselected_string(value, record_id, as_key=False)
        return value

    def unselected_string(
        self, value: str, record_id: str | None, *, as_key: bool
    ) -> str | Removed | None:
        """Decide every token inside `value`; mask the whole string if the prefix survives."""
        ctx = self.ctx
        match = TOKEN_PATTERN.fullmatch(value)
        if match is not None:
            return reveal_token(ctx, value, record_id, as_json=not as_key)
        out = TOKEN_PATTERN.sub(lambda m: reveal_text(ctx, m.group(), record_id), value)
        if TOKEN_PREFIX in out:
            ctx.stats.integrity(None, "malformed")
            return self.policy.redacted_text
        return out

    def mapping(  # noqa: PLR0917 - hot path: positional arguments are cheaper
        self,
        obj: dict[str, object],
        depth: int,
        practice: RecordPractice,
        record_id: str | None,
        states: tuple[int, ...],
        inherited: str | None,
    ) -> object:
        """Walk a JSON object; a selected one the caller may not see becomes its class's mask.

        REMOVED when every one of its members is (an emptied object is left out too).
        """
        if depth > self.max_depth:
            raise UnsafeBody("too_deep")
        shape = self.policy.shape(tuple(obj))
        if shape.context:
            practice, record_id = _record_context(shape, obj, practice, record_id)
        if (
            inherited is not None
            and obj
            and not allow_plaintext(self.ctx, inherited, practice, record_id)
        ):
            return self.masked_container(obj, depth, inherited)
        edits = self.edits
        before = edits.count()
        if not states:
            removed = self.mapping_by_key(obj, shape.classes, depth, practice, record_id, inherited)
        else:
            removed = self.mapping_by_path(
                obj, shape, depth, practice, record_id, states, inherited
            )
        if shape.rekey:
            self.rekey(obj, shape.roles, record_id)
        if edits.count() != before:
            edits.dirty.add(id(obj))
        return REMOVED if removed and removed == len(obj) else obj

    def masked_container(self, obj: dict[str, object], depth: int, field_class: str) -> object:
        """The mask for a whole selected object: its keys are as much PHI as its values.

        A subtree nested beyond max_depth is still refused, so a body gets the same answer
        (502 or not) whoever asks.
        """
        _refuse_too_deep(obj, depth, self.max_depth)
        self.ctx.stats.masked[field_class] += 1
        return self.policy.mask_for(field_class).for_json(None)

    def mapping_by_key(  # noqa: PLR0917 - hot path: positional arguments are cheaper
        self,
        obj: dict[str, object],
        classes: tuple[str | None, ...],
        depth: int,
        practice: RecordPractice,
        record_id: str | None,
        inherited: str | None,
    ) -> int:
        """`mapping_by_path` when no path selector is live here: key selectors only.

        The common case (and the only one without `paths:` selectors); the same outcomes,
        with one class per key precomputed in the shape instead of a role lookup per key.
        Returns how many members were removed.
        """
        values = self.edits.values
        removed = 0
        for key_class, (key, item) in zip(classes, obj.items(), strict=True):
            field_class = key_class or inherited
            new: object
            if type(item) is str:
                if field_class is None:
                    if TOKEN_PREFIX not in item:
                        continue
                    new = self.unselected_string(item, record_id, as_key=False)
                elif item.startswith(TOKEN_PREFIX):
                    new = reveal_token(self.ctx, item, record_id, as_json=True)
                else:
                    new = self.selected_string(item, field_class, practice, record_id)
            elif field_class is None and (item is None or type(item) is int or type(item) is bool):
                continue
            else:
                new = self.value(item, depth, practice, record_id, _NO_STATES, field_class)
            if new is not item:
                values[id(obj), key] = new
                removed += new is REMOVED
        return removed

    def mapping_by_path(  # noqa: PLR0917 - hot path: positional arguments are cheaper
        self,
        obj: dict[str, object],
        shape: ObjectShape,
        depth: int,
        practice: RecordPractice,
        record_id: str | None,
        states: tuple[int, ...],
        inherited: str | None,
    ) -> int:
        """Walk `obj`'s members while path selectors are live (`states` not empty).

        Returns how many members were removed.
        """
        values = self.edits.values
        removed = 0
        matcher = self.matcher
        for key_role, (key, item) in zip(shape.roles, obj.items(), strict=True):
            child_states, path_class = matcher.step(states, key_role.normalized, 0, item)
            field_class = path_class or key_role.field_class or inherited
            # The common scalars inline (same outcome as self.value, without the call).
            new: object
            if type(item) is str:
                if field_class is None:
                    if TOKEN_PREFIX not in item:
                        continue
                    new = self.unselected_string(item, record_id, as_key=False)
                elif item.startswith(TOKEN_PREFIX):
                    new = reveal_token(self.ctx, item, record_id, as_json=True)
                else:
                    new = self.selected_string(item, field_class, practice, record_id)
            elif field_class is None and (item is None or type(item) is int or type(item) is bool):
                continue
            else:
                new = self.value(item, depth, practice, record_id, child_states, field_class)
            if new is not item:
                values[id(obj), key] = new
                removed += new is REMOVED
        return removed

    def rekey(
        self, obj: dict[str, object], roles: tuple[KeyRole, ...], record_id: str | None
    ) -> None:
        """Decide every token-bearing key of `obj`; two keys becoming one is unsafe.

        The keys of removed members are not shown, so they are neither decided nor counted.
        """
        seen: set[str] = set()
        renamed: dict[str, str] = {}
        values = self.edits.values
        container = id(obj)
        for key_role, key in zip(roles, obj, strict=True):
            if values.get((container, key)) is REMOVED:
                continue
            new_key = key
            if key_role.has_prefix:
                replaced = self.unselected_string(key, record_id, as_key=True)
                new_key = replaced if isinstance(replaced, str) else self.policy.redacted_text
                renamed[key] = new_key
            if new_key in seen:
                raise UnsafeBody("key_collision")
            seen.add(new_key)
        self.edits.keys[id(obj)] = renamed

    def sequence(  # noqa: PLR0917 - hot path: positional arguments are cheaper
        self,
        items: list[object],
        depth: int,
        practice: RecordPractice,
        record_id: str | None,
        states: tuple[int, ...],
        inherited: str | None,
    ) -> object:
        """Decide every element of a JSON array; REMOVED when every element is removed."""
        if depth > self.max_depth:
            raise UnsafeBody("too_deep")
        value = self.value
        edits = self.edits
        values = edits.values
        before = edits.count()
        removed = 0
        if not states:
            for index, item in enumerate(items):
                new = value(item, depth, practice, record_id, _NO_STATES, inherited)
                if new is not item:
                    values[id(items), index] = new
                    removed += new is REMOVED
        else:
            matcher = self.matcher
            for index, item in enumerate(items):
                child_states, path_class = matcher.step(states, None, index, item)
                new = value(item, depth, practice, record_id, child_states, path_class or inherited)
                if new is not item:
                    values[id(items), index] = new
                    removed += new is REMOVED
        if edits.count() != before:
            edits.dirty.add(id(items))
        return REMOVED if removed and removed == len(items) else items

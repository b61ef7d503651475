"""Which XML element text and attribute values hold which class: the selection rules, once.

For every element, in document order:

* its class is that of the first `xml:` selector (config order) that ends at it, else that of
  a `keys:` selector naming its local name, else the class of the nearest selected ancestor;
* each attribute's class is that of the first `xml:` attribute selector that reaches it, else a
  `keys:` selector on its local name, else its element's class. Attributes in the XML Schema
  instance namespace (`xsi:type`, `xsi:nil`) describe the value's type, not data: they are
  selected only by name, never inherited;
* the record practice and id in force are, as in JSON, the nearest element's own: an attribute
  or a text-only child element named by `record.practice_keys` / `record.id_keys` (two
  practices that disagree, or one holding a token: unknown), else the enclosing element's.

The request and response transforms supply what happens to a selected value (`XmlVisitor`);
this module only finds them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from keys.token_format import TOKEN_PREFIX
from proxy.transform.reveal import UNKNOWN_PRACTICE, RecordPractice

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from proxy.transform.policy import KeyRole
    from proxy.transform.xml_document import XmlAttribute, XmlElement
    from proxy.transform.xml_selectors import XmlSelector

__all__ = ["Next", "XmlVisitor", "walk_xml"]

_XSI: Final = "http://www.w3.org/2001/XMLSchema-instance"


class Next(enum.Enum):
    """What the walk does after a visitor has seen an element."""

    DESCEND = enum.auto()  # decide its attributes, then its children
    ATTRIBUTES_ONLY = enum.auto()  # its content was replaced whole: decide its attributes only
    GONE = enum.auto()  # the element was left out: nothing of it is decided any more


class XmlVisitor(Protocol):
    """What the request or response transform does with each element and attribute."""

    def element(
        self,
        element: XmlElement,
        field_class: str | None,
        practice: RecordPractice,
        rid: str | None,
    ) -> Next:
        """Decide an element's text (`field_class` None: not selected)."""
        ...

    def attribute(
        self, attribute: XmlAttribute, field_class: str, practice: RecordPractice, rid: str | None
    ) -> None:
        """Decide one selected attribute value."""
        ...


@dataclass(frozen=True, slots=True)
class _State:
    waiting: tuple[frozenset[int], ...]  # per selector: element steps waiting for a child
    above: tuple[bool, ...]  # per selector: matched at or above (for `//@name`)


def _scalar(value: str) -> str | None:
    """A practice or record id as text; None if empty or a token (not usable as either)."""
    return None if not value or TOKEN_PREFIX in value else value


class _Walk:
    def __init__(
        self,
        selectors: Sequence[tuple[XmlSelector, str]],
        role: Callable[[str], KeyRole],
        visitor: XmlVisitor,
    ) -> None:
        self.selectors = selectors
        self.role = role
        self.visitor = visitor

    def initial(self) -> _State:
        return _State(
            tuple(frozenset({0}) if sel.steps else frozenset() for sel, _ in self.selectors),
            tuple(not sel.steps for sel, _ in self.selectors),
        )

    def context(
        self, element: XmlElement, practice: RecordPractice, rid: str | None
    ) -> tuple[RecordPractice, str | None]:
        named = [(a.local, a.value) for a in element.attributes] + [
            (c.local, c.value) for c in element.children if c.text_only
        ]
        own: RecordPractice = None
        own_id: str | None = None
        for name, value in named:
            role = self.role(name)
            if role.practice_key:
                text = _scalar(value)
                own = UNKNOWN_PRACTICE if text is None or own not in (None, text) else text
            elif role.id_key and own_id is None:
                own_id = _scalar(value)
        return (practice if own is None else own, rid if own_id is None else own_id)

    def match(
        self, element: XmlElement, state: _State
    ) -> tuple[_State, str | None, list[tuple[XmlSelector, str]]]:
        """The state for `element`'s children, its `xml:` class, the attribute rules reaching it."""
        attrs = {(a.uri, self.role(a.local).normalized): a.value for a in element.attributes}
        uri, local = element.uri, self.role(element.local).normalized
        waiting: list[frozenset[int]] = []
        above: list[bool] = []
        element_class: str | None = None
        attribute_rules: list[tuple[XmlSelector, str]] = []
        for number, (selector, field_class) in enumerate(self.selectors):
            steps = selector.steps
            matched = False
            new: set[int] = set()
            for index in state.waiting[number]:
                step = steps[index]
                if step.descendant:
                    new.add(index)
                if step.matches(uri, local, attrs):
                    if index + 1 == len(steps):
                        matched = True
                    else:
                        new.add(index + 1)
            here = state.above[number] or (matched and selector.attribute_below)
            waiting.append(frozenset(new))
            above.append(here)
            if selector.attribute is None:
                if matched and element_class is None:
                    element_class = field_class
            elif matched or (selector.attribute_below and here):
                attribute_rules.append((selector, field_class))
        return _State(tuple(waiting), tuple(above)), element_class, attribute_rules

    def visit(
        self,
        element: XmlElement,
        state: _State,
        inherited: str | None,
        practice: RecordPractice,
        rid: str | None,
    ) -> None:
        child_state, element_class, attribute_rules = self.match(element, state)
        field_class = element_class or self.role(element.local).field_class or inherited
        practice, rid = self.context(element, practice, rid)
        after = self.visitor.element(element, field_class, practice, rid)
        if after is Next.GONE:
            return
        for attribute in element.attributes:
            attribute_class = self.attribute_class(attribute, attribute_rules, field_class)
            if attribute_class is not None:
                self.visitor.attribute(attribute, attribute_class, practice, rid)
        if after is Next.DESCEND:
            for child in element.children:
                self.visit(child, child_state, field_class, practice, rid)

    def attribute_class(
        self,
        attribute: XmlAttribute,
        rules: list[tuple[XmlSelector, str]],
        element_class: str | None,
    ) -> str | None:
        role = self.role(attribute.local)
        for selector, field_class in rules:
            test = selector.attribute
            if test is not None and test.matches(attribute.uri, role.normalized):
                return field_class
        if role.field_class is not None:
            return role.field_class
        return None if attribute.uri == _XSI else element_class


def walk_xml(
    root: XmlElement,
    selectors: Sequence[tuple[XmlSelector, str]],
    role: Callable[[str], KeyRole],
    visitor: XmlVisitor,
    practice: RecordPractice = None,
) -> None:
    """Show `visitor` every element (and every selected attribute) of `root`, top-down."""
    walk = _Walk(selectors, role, visitor)
    walk.visit(root, walk.initial(), None, practice, None)

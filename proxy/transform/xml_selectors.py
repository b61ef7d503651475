"""XML selectors: a small, fixed subset of XPath, compiled once and matched during one pass.

The grammar (every selector starts at the root):

    /name            a child element (the first step: the root element)
    //name           an element at any depth below (the first step: anywhere in the document)
    *                any element name
    p:name           an element in the namespace bound to prefix `p` in `fields.xml_namespaces`
    name             an element of that local name in ANY namespace (or none)
    [@attr]          the element has that attribute
    [@attr='v']      ... with exactly that value (decoded; 'single' or "double" quotes)
    /@attr  //@attr  last step only: the attribute on the element matched so far (`//@`: on it
                     or any element below it; `//@attr` alone: on any element)

Examples: `//hl7:patientRole/hl7:id[@root='2.16.840.1.113883.4.1']/@extension` (a CDA SSN),
`/soap:Envelope/soap:Body//ssn`.

Two choices differ from XPath 1.0, both towards selecting more: an unprefixed name matches its
local name in every namespace (CDA puts everything in a default namespace, and an XPath
`//patient` would silently match nothing there), and local names compare after the policy's
normalization (case, NFKC, separators), as JSON keys do. Prefixed names match their namespace
exactly. No other XPath (axes, functions, positions, `or`) is accepted: a selector outside
this subset is a configuration error at load, with the position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "AttrTest",
    "ElementStep",
    "XmlSelector",
    "XmlSelectorError",
    "compile_xml_selector",
]

_NCNAME: Final = re.compile(r"[^\W\d][\w.\-]*")
_LITERAL: Final = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_SPACE: Final = re.compile(r"[ \t]*")
_NAME_LIMIT: Final = 200


class XmlSelectorError(ValueError):
    """A selector outside the supported subset, or an unbound prefix; names the position."""


@dataclass(frozen=True, slots=True)
class AttrTest:
    """An attribute name test: namespace URI (None: any) and normalized local name."""

    uri: str | None
    local: str

    def matches(self, uri: str, local: str) -> bool:
        """True if an attribute (its namespace URI, "" for none; normalized local name) fits."""
        return local == self.local and (self.uri is None or uri == self.uri)


@dataclass(frozen=True, slots=True)
class ElementStep:
    """One element step: `/` or `//`, a name test (None: `*`), and `[@…]` predicates."""

    descendant: bool
    uri: str | None  # None: any namespace
    local: str | None  # normalized; None: any name
    predicates: tuple[tuple[AttrTest, str | None], ...] = ()  # value None: exists

    def matches(self, uri: str, local: str, attrs: Mapping[tuple[str, str], str]) -> bool:
        """True if an element (namespace URI, normalized local name, its attributes) fits."""
        if self.local is not None and local != self.local:
            return False
        if self.uri is not None and uri != self.uri:
            return False
        for test, value in self.predicates:
            found = [v for (a_uri, a_local), v in attrs.items() if test.matches(a_uri, a_local)]
            if not found or (value is not None and value not in found):
                return False
        return True


@dataclass(frozen=True, slots=True)
class XmlSelector:
    """A compiled selector: element steps, then optionally an attribute."""

    source: str
    steps: tuple[ElementStep, ...]
    attribute: AttrTest | None = None
    #: `//@name`: the attribute on the matched element or on any element below it.
    attribute_below: bool = False

    def required_names(self) -> frozenset[str] | None:
        """Local names of which one must occur in a body for this selector to match anything.

        The attribute's name if there is one, else the last named element step's; None when
        every step is `*` (any body may match). For the no-PHI fast path.
        """
        if self.attribute is not None:
            return frozenset({self.attribute.local})
        for step in reversed(self.steps):
            if step.local is not None:
                return frozenset({step.local})
        return None


class _Parser:
    def __init__(
        self, text: str, namespaces: Mapping[str, str], normalize: Callable[[str], str]
    ) -> None:
        self.text = text
        self.pos = 0
        self.namespaces = namespaces
        self.normalize = normalize

    def fail(self, what: str) -> XmlSelectorError:
        return XmlSelectorError(f"{what} at position {self.pos} of {self.text!r}")

    def peek(self, literal: str) -> bool:
        return self.text.startswith(literal, self.pos)

    def take(self, literal: str) -> bool:
        if self.peek(literal):
            self.pos += len(literal)
            return True
        return False

    def skip_space(self) -> None:
        match = _SPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def ncname(self) -> str:
        match = _NCNAME.match(self.text, self.pos)
        if match is None:
            raise self.fail("expected a name (letters, digits, _ - .; not starting with a digit)")
        self.pos = match.end()
        return match.group()

    def qname(self) -> tuple[str | None, str]:
        """(namespace URI or None for any, normalized local name)."""
        start = self.pos
        first = self.ncname()
        if not self.take(":"):
            return None, self._local(first)
        local = self.ncname()
        uri = self.namespaces.get(first)
        if uri is None:
            self.pos = start
            bound = ", ".join(sorted(self.namespaces)) or "none"
            raise self.fail(
                f"prefix {first!r} is not bound under fields.xml_namespaces (bound: {bound})"
            )
        return uri, self._local(local)

    def _local(self, name: str) -> str:
        folded = self.normalize(name)
        if not folded or len(name) > _NAME_LIMIT:
            raise self.fail(f"name {name!r} is empty after normalization or too long")
        return folded

    def predicate(self) -> tuple[AttrTest, str | None]:
        self.skip_space()
        if not self.take("@"):
            raise self.fail("a predicate must test an attribute: [@name] or [@name='value']")
        uri, local = self.qname()
        self.skip_space()
        value: str | None = None
        if self.take("="):
            self.skip_space()
            match = _LITERAL.match(self.text, self.pos)
            if match is None:
                raise self.fail("expected a quoted value after '='")
            value = match.group(1) if match.group(1) is not None else match.group(2)
            self.pos = match.end()
            self.skip_space()
        if not self.take("]"):
            raise self.fail("expected ']' (only [@name] and [@name='value'] are supported)")
        return AttrTest(uri, local), value

    def element_step(self, descendant: bool) -> ElementStep:
        if self.take("*"):
            uri, name = None, None
        else:
            uri, name = self.qname()
        predicates = []
        while self.take("["):
            predicates.append(self.predicate())
        return ElementStep(descendant, uri, name, tuple(predicates))

    def parse(self) -> XmlSelector:
        steps: list[ElementStep] = []
        if not self.peek("/"):
            raise self.fail("a selector starts with / (from the root) or // (anywhere)")
        while self.pos < len(self.text):
            if self.take("//"):
                descendant = True
            elif self.take("/"):
                descendant = False
            else:
                raise self.fail("expected / or // between steps")
            if self.take("@"):
                uri, local = self.qname()
                if self.pos != len(self.text):
                    raise self.fail("an attribute step must be the last step")
                if not steps and not descendant:
                    raise self.fail("/@name has no element: write //@name or /root/@name")
                return XmlSelector(self.text, tuple(steps), AttrTest(uri, local), descendant)
            steps.append(self.element_step(descendant))
        return XmlSelector(self.text, tuple(steps))


def compile_xml_selector(
    text: str, namespaces: Mapping[str, str], normalize: Callable[[str], str]
) -> XmlSelector:
    """Parse `text`; XmlSelectorError (naming the position) if it is outside the subset."""
    return _Parser(text.strip(), namespaces, normalize).parse()

"""XML request bodies: selected element text and attribute values encrypted, or refused.

Read only when the policy has an `xml:` selector (otherwise an XML body naming a protected field
is refused whole, `request._refuse_unreadable`). The body is parsed with defusedxml and no
document type declaration (SOAP forbids them; entities could spell a field the proxy never
sees); each selected value is decoded (character references, CDATA), handed to the same
`seal` the JSON walk uses (encrypt on a write route, refuse plaintext elsewhere), and the token
written in place of exactly the bytes of that value. Every other byte reaches the portal as it
was sent. An empty value is left as it is (there is nothing to hide, and `<ssn/>` has no room
for a token).

A selected element that holds child elements, comments or processing instructions is refused
(422): the names and text of its children would reach the portal in clear, as the keys of a
selected JSON object would.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING, Final

from keys.token_format import TOKEN_PATTERN_BYTES
from proxy.transform.errors import RequestRejected
from proxy.transform.xml_document import (
    XmlRefused,
    escape_attribute,
    escape_text,
    parse_xml,
    splice_edits,
)
from proxy.transform.xml_walk import Next, walk_xml

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.transform.policy import FieldPolicy
    from proxy.transform.reveal import RecordPractice
    from proxy.transform.xml_document import XmlAttribute, XmlElement

__all__ = [
    "body_key_values",
    "declares_entities",
    "has_declarations",
    "may_nest_documents",
    "read_request_xml",
    "seal_xml",
]

#: A document type or entity declaration (any case: some parsers are lenient).
_DECLARATION: Final = re.compile(rb"<!(?:doctype|entity|attlist)", re.IGNORECASE)
#: Declarations that change what an XML parser reads (entities, default attributes).
_ENTITY_DECLARATION: Final = re.compile(rb"<!(?:entity|attlist)", re.IGNORECASE)
_DOCUMENT_STARTS: Final = ("<", "{", "[")
_NESTING_MARKERS: Final = (b"&lt;", b"&#", b"<![CDATA[")
_REFUSALS: Final = {
    "xml_dtd": (
        422,
        (
            "the XML request body carries a document type or entity declaration (<!DOCTYPE, "
            "<!ENTITY); the proxy refuses them, since entities could spell a protected field it "
            "cannot see and the portal's parser might load external files; nothing was forwarded. "
            "Send the XML without a DOCTYPE (SOAP forbids one anyway)."
        ),
        "xml_declaration_refused",
    ),
    "xml_encoding": (
        415,
        (
            "the XML request body is not UTF-8 (its XML declaration names another encoding, or it "
            "starts with a UTF-16/32 byte-order mark); the proxy reads XML only as UTF-8, so it "
            "cannot check it for PHI; nothing was forwarded. Send it as UTF-8."
        ),
        "unsupported_charset",
    ),
    "invalid_xml": (
        400,
        (
            "the XML request body is not well-formed (or uses an entity it does not define), so "
            "the proxy cannot read which fields it carries; nothing was forwarded. Send "
            "well-formed UTF-8 XML."
        ),
        "invalid_xml",
    ),
    "too_deep": (
        400,
        "the XML request body is nested deeper than fields.max_depth; nothing was forwarded.",
        "too_deep",
    ),
}


def has_declarations(body: bytes) -> bool:
    """True if `body` holds something like a DOCTYPE, ENTITY or ATTLIST declaration."""
    return _DECLARATION.search(body) is not None


def declares_entities(body: bytes) -> bool:
    """True if `body` holds something like an ENTITY or ATTLIST declaration.

    For bodies the proxy does not read as XML: an entity can spell a protected field's name
    (`<!ENTITY e "<s&#115;n>…">`) that no byte search finds, for a portal that parses XML
    whatever the label says. A bare `<!DOCTYPE html>` is not one.
    """
    return _ENTITY_DECLARATION.search(body) is not None


def may_nest_documents(body: bytes) -> bool:
    """True if `body` may carry a document inside its text: escaped markup or CDATA.

    Such text is read and checked (`document_in_xml_text`) even when the body spells no
    protected name, since the names inside may be character references (`s&amp;#115;n`).
    """
    return any(marker in body for marker in _NESTING_MARKERS)


def read_request_xml(body: bytes, max_depth: int) -> XmlElement:
    """The parsed body, or RequestRejected (400, 415 or 422) saying why it cannot be read."""
    try:
        return parse_xml(body, max_depth=max_depth, forbid_dtd=True)
    except XmlRefused as exc:
        status, message, reason = _REFUSALS[exc.reason]
        raise RequestRejected(status, message, reason=reason) from None


def body_key_values(root: XmlElement, policy: FieldPolicy, name: str) -> set[str]:
    """Values of the root element's attributes and text-only children named `name`.

    The XML form of a write route's `practice_from: {body_key: …}`.
    """
    wanted = policy.normalize(name)
    named = [(a.local, a.value) for a in root.attributes] + [
        (child.local, child.value) for child in root.children if child.text_only
    ]
    return {value for local, value in named if policy.normalize(local) == wanted}


class _Sealer:
    """Seals each selected value with `seal`; records (start, end, new bytes) edits."""

    def __init__(self, policy: FieldPolicy, seal: Callable[[str, str], str]) -> None:
        self.policy = policy
        self.seal = seal
        self.edits: list[tuple[int, int, bytes]] = []

    def element(
        self,
        element: XmlElement,
        field_class: str | None,
        _practice: RecordPractice,
        _rid: str | None,
    ) -> Next:
        if field_class is None:
            self.refuse_nested_document(element.value)
            return Next.DESCEND
        if not element.text_only:
            raise RequestRejected(
                422,
                f"an XML element of class {field_class!r} holds child elements, comments or "
                "processing instructions: their names and text would reach the portal in "
                "clear, so nothing was forwarded. Select the text-only elements (or "
                "attributes) inside it instead.",
                reason="markup_in_selected_element",
            )
        value = element.value
        if value:
            sealed = self.seal(value, field_class)
            if sealed != value:
                token = escape_text(sealed).encode("utf-8")
                self.edits.append((element.content_start, element.content_end, token))
        return Next.DESCEND

    def refuse_nested_document(self, text: str) -> None:
        """422 for unselected text holding XML or JSON that names a protected field.

        `<data>&lt;ssn&gt;…</data>` or a CDATA section: the portal may parse that text and
        store what is inside, which the proxy would neither encrypt nor see as PHI.
        """
        start = text.lstrip()[:1]
        if start not in _DOCUMENT_STARTS:
            return
        if start == "<":  # the portal's second parse decodes `s&#115;n` in there too
            text = html.unescape(text)
        inner = TOKEN_PATTERN_BYTES.sub(b"", text.encode("utf-8", "surrogatepass"))
        if self.policy.may_hold_selected_keys(inner) or declares_entities(inner):
            raise RequestRejected(
                422,
                "an XML element's text holds XML or JSON (escaped, or in a CDATA section) that "
                "names a field the proxy protects; the portal could read PHI out of it that the "
                "proxy never encrypts. Send those fields as elements of the body itself; "
                "nothing was forwarded.",
                reason="document_in_xml_text",
            )

    def attribute(
        self,
        attribute: XmlAttribute,
        field_class: str,
        _practice: RecordPractice,
        _rid: str | None,
    ) -> None:
        value = attribute.value
        if value:
            sealed = self.seal(value, field_class)
            if sealed != value:
                start, end = attribute.value_span
                self.edits.append((start, end, escape_attribute(sealed).encode("utf-8")))


def seal_xml(
    body: bytes, root: XmlElement, policy: FieldPolicy, seal: Callable[[str, str], str]
) -> bytes:
    """`body` with every selected value replaced by what `seal(value, class)` returns."""
    sealer = _Sealer(policy, seal)
    walk_xml(root, policy.xml_selectors, policy.role, sealer)
    return splice_edits(body, sealer.edits)

"""XML responses: selected element text and attribute values decided like JSON values.

Used for XML media types (application/xml, text/xml, */*+xml such as SOAP and XHTML) when the
policy has an `xml:` selector; otherwise XML is token-scanned like any markup. A body that may
hold a selected name, or declares anything, is parsed (defusedxml); the selection rules are in
`xml_walk`. For each selected value, decoded (character references, CDATA):

* a token (the value starts with the prefix) is decrypted or masked, as in JSON;
* other text is legacy plaintext: kept if the caller may see the class for the record's
  practice (else the route's), otherwise masked;
* a selected element holding child elements, comments or processing instructions is kept whole
  for a caller who may see its class, and otherwise replaced whole (its content) by the mask;
* `mask: remove` leaves the attribute out (with the blank before it), or the element (with the
  indentation before it, back to the line break), never the root element (its content becomes
  `redacted_text`); `null` is `redacted_text`.

What is written is XML-escaped for where it lands; only those bytes change. Then every token
left anywhere else (unselected text, other attributes, comments, CDATA) is decided by the token
scan with XML escaping, as in any markup body, and a malformed one is masked.

Refused (502, nothing sent): an internal DTD subset or entity declaration (`unsafe_xml`: a
client's parser would expand entities and add default attributes the proxy never saw); a body
that is not well-formed XML (`invalid_xml`) or not UTF-8 (`unsupported_charset`) when it holds a
selected name outside tokens; nesting deeper than `fields.max_depth` (`too_deep`). Not
well-formed and naming nothing selected: token-scanned as before.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from keys.token_format import TOKEN_PATTERN_BYTES, TOKEN_PREFIX, TOKEN_PREFIX_BYTES
from proxy.transform.errors import UnsafeBody
from proxy.transform.reveal import allow_plaintext, decide_plaintext, reveal_token
from proxy.transform.splice import REMOVED
from proxy.transform.textbody import transform_text
from proxy.transform.xml_document import (
    XmlRefused,
    escape_attribute,
    escape_text,
    parse_xml,
    splice_edits,
)
from proxy.transform.xml_walk import Next, walk_xml

if TYPE_CHECKING:
    from proxy.transform.mediatype import BodyKind
    from proxy.transform.reveal import RecordPractice, RevealContext
    from proxy.transform.xml_document import XmlAttribute, XmlElement

__all__ = ["declares_xml", "reads_as_xml", "transform_xml"]

_UTF8_CODECS: Final = frozenset({"utf-8", "utf-8-sig", "ascii"})
#: Anything that could be a declaration: the body must then be parsed (and may be refused).
_DECLARATION: Final = re.compile(rb"<!(?:doctype|entity|attlist)", re.IGNORECASE)
_BLANKS: Final = b" \t"
_UNSAFE: Final = {
    "xml_dtd": "unsafe_xml",
    "xml_encoding": "unsupported_charset",
    "invalid_xml": "invalid_xml",
    "too_deep": "too_deep",
}


def reads_as_xml(kind: BodyKind, ctx: RevealContext) -> bool:
    """True if a body of this kind goes through `transform_xml` (XML type, reading is on)."""
    return kind.xml and ctx.policy.reads_xml


def declares_xml(body: bytes) -> bool:
    """True if `body` may hold a DOCTYPE, ENTITY or ATTLIST declaration (then it is parsed)."""
    return b"<!" in body and _DECLARATION.search(body) is not None


def _holds_plain_names(body: bytes, ctx: RevealContext) -> bool:
    if TOKEN_PREFIX_BYTES in body:
        body = TOKEN_PATTERN_BYTES.sub(b"", body)
    return ctx.policy.may_hold_selected_keys(body)


def transform_xml(body: bytes, kind: BodyKind, ctx: RevealContext) -> bytes:
    """Decide every selected value and every token of an XML body; `body` itself if unchanged.

    Raises UnsafeBody (see the module docstring).
    """
    names = _holds_plain_names(body, ctx)
    if not names and not declares_xml(body):
        return transform_text(body, kind, ctx)
    if kind.charset not in _UTF8_CODECS:
        if names:
            raise UnsafeBody("unsupported_charset")
        return transform_text(body, kind, ctx)
    try:
        root = parse_xml(body, max_depth=ctx.policy.max_depth, forbid_dtd=False)
    except XmlRefused as exc:
        if exc.reason == "invalid_xml" and not names:
            return transform_text(body, kind, ctx)
        raise UnsafeBody(_UNSAFE[exc.reason]) from None
    reveal = _Reveal(body, ctx, root)
    walk_xml(root, ctx.policy.xml_selectors, ctx.policy.role, reveal)
    return transform_text(splice_edits(body, reveal.edits), kind, ctx)


class _Reveal:
    """Decides each selected value for the caller; records (start, end, new bytes) edits."""

    def __init__(self, body: bytes, ctx: RevealContext, root: XmlElement) -> None:
        self.body = body
        self.ctx = ctx
        self.root = root
        self.edits: list[tuple[int, int, bytes]] = []

    def decide(
        self, value: str, field_class: str, practice: RecordPractice, rid: str | None
    ) -> object:
        """The new value (a string, None for null, REMOVED), or `value` itself if kept."""
        if value.startswith(TOKEN_PREFIX):
            return reveal_token(self.ctx, value, rid, as_json=True)
        decision = decide_plaintext(self.ctx, field_class, value, practice, rid)
        return value if decision.mask is None else decision.for_json()

    def text(self, new: object) -> str:
        return new if isinstance(new, str) else self.ctx.policy.redacted_text

    def element(
        self,
        element: XmlElement,
        field_class: str | None,
        practice: RecordPractice,
        rid: str | None,
    ) -> Next:
        if field_class is None:
            return Next.DESCEND
        if not element.text_only:
            if allow_plaintext(self.ctx, field_class, practice, rid):
                return Next.DESCEND
            self.ctx.stats.masked[field_class] += 1
            return self.replace(element, self.ctx.policy.mask_for(field_class).for_json(None))
        value = element.value
        if not value:
            return Next.DESCEND
        new = self.decide(value, field_class, practice, rid)
        return Next.DESCEND if new is value else self.replace(element, new)

    def replace(self, element: XmlElement, new: object) -> Next:
        if new is REMOVED and element is not self.root:  # the document keeps its root
            self.edits.append((self.indentation(element.start), element.end, b""))
            return Next.GONE
        content = escape_text(self.text(new)).encode("utf-8")
        self.edits.append((element.content_start, element.content_end, content))
        return Next.ATTRIBUTES_ONLY

    def indentation(self, start: int) -> int:
        """Where a removed element's line starts: blanks back to a line break go with it."""
        body = self.body
        at = start
        while at > 0 and body[at - 1] in _BLANKS:
            at -= 1
        if at > 0 and body[at - 1 : at] == b"\n":
            at -= 1
            if at > 0 and body[at - 1 : at] == b"\r":
                at -= 1
            return at
        return start

    def attribute(
        self,
        attribute: XmlAttribute,
        field_class: str,
        practice: RecordPractice,
        rid: str | None,
    ) -> None:
        value = attribute.value
        if not value:
            return
        new = self.decide(value, field_class, practice, rid)
        if new is value:
            return
        if new is REMOVED:
            self.edits.append((*attribute.span, b""))
            return
        start, end = attribute.value_span
        self.edits.append((start, end, escape_attribute(self.text(new)).encode("utf-8")))

"""Parse an XML body safely and find the exact bytes of every element's text and attribute value.

Parsing is defusedxml's (expat underneath, with its guards): an entity declaration, an external
entity or (on requests, `forbid_dtd`) any document type declaration stops the parse. What
the parser accepts is then located in the original bytes: expat's `CurrentByteIndex` gives
where each start and end tag begins; the tag itself is read with a regex (safe: the parser has
already proven it well-formed), which gives each attribute value's span between its quotes. So
a transform can replace exactly one value and leave every other byte as it came: whitespace,
comments, attribute order and quoting, namespace prefixes, the XML declaration.

UTF-8 only (US-ASCII is UTF-8): an XML declaration naming another encoding, a UTF-16/32 byte
order mark or a NUL is refused before parsing, since byte offsets and the byte search for tokens
assume UTF-8.

`escape_text` / `escape_attribute` write a value back so that a conforming parser reads exactly
that value (line breaks and tabs in attributes as character references, so attribute-value
normalization does not turn them into spaces; a CR anywhere, so end-of-line handling keeps it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from xml.etree.ElementTree import ParseError  # only the error: parsing is defusedxml's

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "XmlAttribute",
    "XmlElement",
    "XmlRefused",
    "escape_attribute",
    "escape_text",
    "parse_xml",
    "splice_edits",
]

_DECLARED_ENCODING: Final = re.compile(
    rb"\A(?:\xef\xbb\xbf)?<\?xml[ \t\r\n][^>]*?encoding[ \t\r\n]*=[ \t\r\n]*[\"']([^\"']*)[\"']"
)
_UTF8_NAMES: Final = frozenset({"utf-8", "us-ascii"})
_WIDE_STARTS: Final = (b"\xff\xfe", b"\xfe\xff", b"\x00")
_WS: Final = rb"[ \t\r\n]"
#: A start tag, at the position expat reported (well-formed: the parser said so).
_START_TAG: Final = re.compile(
    rb"<[^ \t\r\n/>]+(?:"
    + _WS
    + rb"+[^ \t\r\n=/>]+"
    + _WS
    + rb"*="
    + _WS
    + rb"*(?:\"[^\"]*\"|'[^']*'))*"
    + _WS
    + rb"*(/?)>"
)
_ATTRIBUTE: Final = re.compile(
    _WS + rb"+([^ \t\r\n=/>]+)" + _WS + rb"*=" + _WS + rb"*(?:\"([^\"]*)\"|'([^']*)')"
)
#: Characters XML 1.0 cannot carry at all, not even as character references.
_NOT_XML: Final = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_ESCAPES: Final = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTRIBUTE_ESCAPES: Final = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "'": "&apos;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


class XmlRefused(Exception):
    """The body is not XML the proxy can read safely; `reason` says which way.

    Reasons: `xml_dtd` (a document type declaration, entity declaration or external entity),
    `xml_encoding` (not UTF-8), `invalid_xml` (not well-formed), `too_deep`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True, eq=False)
class XmlAttribute:
    """One attribute as written: resolved name, decoded value, and the bytes of its value."""

    uri: str  # "" for no namespace
    local: str  # as written (not normalized)
    value: str
    value_span: tuple[int, int]  # between the quotes
    span: tuple[int, int]  # from the whitespace before the name to the closing quote


@dataclass(slots=True, eq=False)
class XmlElement:
    """One element: its name, attributes, direct text, children and byte spans."""

    uri: str
    local: str
    start: int  # the "<" of the start tag
    attributes: list[XmlAttribute]
    content_start: int = -1  # after the start tag's ">"; -1 for an empty-element tag
    content_end: int = -1  # the "<" of the end tag
    end: int = -1  # after the end tag (or the empty-element tag)
    children: list[XmlElement] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    #: Comments or processing instructions directly inside (not plain text content).
    has_markup: bool = False

    @property
    def text_only(self) -> bool:
        """True if the content is character data only (text, CDATA, references)."""
        return not self.children and not self.has_markup

    @property
    def value(self) -> str:
        """The decoded direct text."""
        return "".join(self.text)


def _split(name: str) -> tuple[str, str]:
    if name.startswith("{"):
        uri, _, local = name[1:].partition("}")
        return uri, local
    return "", name


class _Locator:
    """The parser's target: builds the element tree with byte spans as events arrive."""

    def __init__(self, body: bytes, max_depth: int) -> None:
        self.body = body
        self.max_depth = max_depth
        self.index: Callable[[], int] = lambda: 0
        self.stack: list[XmlElement] = []
        self.root: XmlElement | None = None

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        if len(self.stack) >= self.max_depth:
            raise XmlRefused("too_deep")
        position = self.index()
        match = _START_TAG.match(self.body, position)
        if match is None:  # pragma: no cover - expat reported a start tag here
            raise XmlRefused("invalid_xml")
        written = [
            (m.group(1), m.span(2) if m.group(2) is not None else m.span(3), m.span())
            for m in _ATTRIBUTE.finditer(self.body, position, match.end())
        ]
        written = [w for w in written if w[0] != b"xmlns" and not w[0].startswith(b"xmlns:")]
        if len(written) != len(attrib):  # pragma: no cover - expat reports every attribute
            raise XmlRefused("invalid_xml")
        attributes = []
        for (raw, value_span, span), (name, value) in zip(written, attrib.items(), strict=True):
            uri, local = _split(name)
            if not raw.decode("utf-8").endswith(local):  # pragma: no cover - order differs
                raise XmlRefused("invalid_xml")
            attributes.append(XmlAttribute(uri, local, value, value_span, span))
        uri, local = _split(tag)
        element = XmlElement(uri, local, position, attributes)
        if match.group(1):
            element.end = match.end()
        else:
            element.content_start = match.end()
        if self.stack:
            self.stack[-1].children.append(element)
        else:
            self.root = element
        self.stack.append(element)

    def end(self, _tag: str) -> None:
        element = self.stack.pop()
        if element.content_start >= 0:
            element.content_end = self.index()
            element.end = self.body.index(b">", element.content_end) + 1

    def data(self, text: str) -> None:
        if self.stack:
            self.stack[-1].text.append(text)

    def comment(self, _text: str) -> None:
        if self.stack:
            self.stack[-1].has_markup = True

    def pi(self, _target: str, _data: str) -> None:
        if self.stack:
            self.stack[-1].has_markup = True

    def close(self) -> None:
        return None


def _refuse_encoding(body: bytes) -> None:
    if body.startswith(_WIDE_STARTS) or b"\x00" in body:
        raise XmlRefused("xml_encoding")
    declared = _DECLARED_ENCODING.match(body)
    if declared is not None and declared.group(1).decode("ascii", "replace").lower() not in (
        _UTF8_NAMES
    ):
        raise XmlRefused("xml_encoding")


def parse_xml(body: bytes, *, max_depth: int, forbid_dtd: bool) -> XmlElement:
    """The root element of `body` with byte spans; XmlRefused if it cannot be read safely.

    `forbid_dtd`: refuse any document type declaration (requests: SOAP forbids them and a
    portal's parser might load one). Otherwise one without an internal subset is allowed
    (an XHTML page's `<!DOCTYPE html …>`), and one with an internal subset is refused: its
    default attributes and entities would give a client values the proxy never saw.
    """
    _refuse_encoding(body)
    locator = _Locator(body, max_depth)
    parser = DefusedXMLParser(target=locator, forbid_dtd=forbid_dtd)
    expat = parser.parser
    locator.index = lambda: int(expat.CurrentByteIndex)
    if not forbid_dtd:

        def doctype(
            _name: str, _sysid: str | None, _pubid: str | None, internal_subset: bool
        ) -> None:
            if internal_subset:
                raise XmlRefused("xml_dtd")

        expat.StartDoctypeDeclHandler = doctype
    try:
        parser.feed(body)
        parser.close()
    except DefusedXmlException:
        raise XmlRefused("xml_dtd") from None
    except ParseError:
        raise XmlRefused("invalid_xml") from None
    if locator.root is None:  # pragma: no cover - expat requires a root element
        raise XmlRefused("invalid_xml")
    return locator.root


def escape_text(text: str) -> str:
    """`text` as element content: a parser reads back exactly `text` (see module docstring)."""
    return _NOT_XML.sub("\ufffd", text).translate(_TEXT_ESCAPES)


def escape_attribute(text: str) -> str:
    """`text` as an attribute value in either quote style, read back exactly as `text`."""
    return _NOT_XML.sub("\ufffd", text).translate(_ATTRIBUTE_ESCAPES)


def splice_edits(body: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """`body` with each (start, end) span replaced; `body` itself when there are none."""
    if not edits:
        return body
    pieces: list[bytes] = []
    last = 0
    for start, end, new in sorted(edits, key=lambda edit: edit[0]):
        pieces += (body[last:start], new)
        last = end
    pieces.append(body[last:])
    return b"".join(pieces)

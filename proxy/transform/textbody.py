"""Token substitution in bodies that are not walked as JSON (HTML, XML, CSV, NDJSON, text, …).

Every token the grammar finds is decided exactly as in JSON (decrypt or mask), and what we
insert is escaped for where it lands, so a decrypted value can never break out of its context:

    html / xml   html.escape (&, <, >, " and ' become entities)
    json-ish     JSON string escaping (tokens live inside JSON strings in NDJSON and friends)
    csv          inside a quoted field: " doubled; a whole unquoted field: quoted if needed;
                 part of an unquoted field: " , CR LF replaced by spaces (the only safe choice
                 without rewriting the field). Whether a position is inside quotes is the parity
                 of the " characters before it (RFC 4180: "" inside a field toggles twice).
    tsv          tab, CR and LF replaced by spaces (TSV has no quoting)
    plain        inserted as is

Afterwards any surviving token prefix (a malformed token) is replaced by the redacted text and
counted as an integrity failure; if the prefix still survives, the body is refused.

`json_pieces` finds JSON inside such a body (JSON clients parse whatever the header says), so
the response transform can walk it for selected keys instead of only scanning it for tokens.
"""

from __future__ import annotations

import codecs
import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import orjson

from keys.token_format import TOKEN_PATTERN_BYTES, TOKEN_PREFIX_BYTES
from proxy.transform.errors import UnsafeBody
from proxy.transform.escaped_tokens import holds_escaped_token
from proxy.transform.jsonsafe import parse_json
from proxy.transform.reveal import RevealContext, reveal_text

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.transform.mediatype import BodyKind

__all__ = [
    "NOT_JSON",
    "JsonPiece",
    "as_charset",
    "is_blank",
    "json_pieces",
    "starts_like_json",
    "transform_text",
]

_LEFTOVER: Final = re.compile(re.escape(TOKEN_PREFIX_BYTES) + rb"[A-Za-z0-9_.\-]*")
_WIDE_BOMS: Final = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, codecs.BOM_UTF32_BE)
_WIDE_PREFIXES: Final = tuple(
    TOKEN_PREFIX_BYTES.decode("ascii").encode(codec)
    for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
)
_JSON_START: Final = (b"{", b"[", b'"')
_LINE_ENDS: Final = (b"\r", b"\n")
_JSON_OPENING: Final = re.compile(rb"(?:\xef\xbb\xbf)?[ \t\r\n\x1e]*[\[{]")
_UTF8_CODECS: Final = frozenset({"utf-8", "utf-8-sig"})
_NON_ASCII: Final = re.compile("[^\x00-\x7f]+")
#: JSON whitespace (RFC 8259); \x0b, \x0c, NBSP, U+2028 … are not.
_JSON_SPACE: Final = b" \t\r\n"
#: What may precede a JSON text on a line: whitespace, and RS (RFC 7464 json-seq records).
_LINE_LEAD: Final = b" \t\x1e"
#: A line that is not one JSON document (token-scanned as text instead of walked).
NOT_JSON: Final = object()


def _json_escape(text: str) -> str:
    return orjson.dumps(text)[1:-1].decode("utf-8")


def _html_escape(text: str) -> str:
    return html.escape(text, quote=True)


def _plain(text: str) -> str:
    return text


def _flatten(text: str, specials: str) -> str:
    for char in specials:
        text = text.replace(char, " ")
    return text


class _Csv:
    """Escapes values for their position in a CSV/TSV body."""

    def __init__(self, body: bytes, delimiter: str) -> None:
        self.body = body
        self.delimiter = delimiter
        self.separators = (delimiter.encode("ascii"), *_LINE_ENDS)
        self.specials = f'"{delimiter}\r\n' if delimiter == "," else "\t\r\n"
        self.quotes = 0
        self.counted_to = 0

    def whole_field(self, start: int, end: int) -> bool:
        body = self.body
        return (start == 0 or body[start - 1 : start] in self.separators) and (
            end == len(body) or body[end : end + 1] in self.separators
        )

    def escape(self, text: str, start: int, end: int) -> str:
        self.quotes += self.body.count(b'"', self.counted_to, start)
        self.counted_to = start
        if not any(char in text for char in self.specials):
            return text
        if self.delimiter != ",":
            return _flatten(text, self.specials)
        if self.quotes % 2:
            return text.replace('"', '""')
        if self.whole_field(start, end):
            return '"' + text.replace('"', '""') + '"'
        return _flatten(text, self.specials)


def _refuse_wide(body: bytes) -> None:
    if body.startswith(_WIDE_BOMS) or (
        b"\x00" in body and any(wide in body for wide in _WIDE_PREFIXES)
    ):
        raise UnsafeBody("unsupported_charset")


def transform_text(body: bytes, kind: BodyKind, ctx: RevealContext) -> bytes:
    """Decide every token in a non-JSON body in place; the original bytes if there is none."""
    if kind.charset is None:
        raise UnsafeBody("unsupported_charset")
    _refuse_wide(body)
    if holds_escaped_token(body):
        raise UnsafeBody("escaped_token")
    if TOKEN_PREFIX_BYTES not in body:
        return body
    escape_mode = kind.escape
    if escape_mode == "sniff":
        escape_mode = "json" if body.lstrip()[:1] in _JSON_START else "plain"
    errors = "xmlcharrefreplace" if escape_mode == "html" else "replace"
    charset = kind.charset
    csv = _Csv(body, kind.delimiter) if escape_mode in {"csv", "tsv"} else None
    simple: Callable[[str], str] = {"html": _html_escape, "json": _json_escape}.get(
        escape_mode, _plain
    )
    pieces: list[bytes] = []
    last = 0
    for match in TOKEN_PATTERN_BYTES.finditer(body):
        start, end = match.span()
        pieces.append(body[last:start])
        text = reveal_text(ctx, match.group().decode("ascii"), None)
        text = csv.escape(text, start, end) if csv is not None else simple(text)
        pieces.append(text.encode(charset, errors))
        last = end
    pieces.append(body[last:])
    out = b"".join(pieces)
    if TOKEN_PREFIX_BYTES in out:
        redacted = ctx.policy.redacted_text
        redacted = _flatten(redacted, csv.specials) if csv is not None else simple(redacted)
        replacement = redacted.encode(charset, errors)

        def leftover(_match: re.Match[bytes]) -> bytes:
            ctx.stats.integrity(None, "malformed")
            return replacement

        out = _LEFTOVER.sub(leftover, out)
        if TOKEN_PREFIX_BYTES in out:  # pragma: no cover - masks cannot contain the prefix
            raise UnsafeBody("token_residue")
    return out


@dataclass(frozen=True, slots=True)
class JsonPiece:
    """One JSON text of a body (the whole body, or one line) and the bytes around it."""

    before: bytes  # leading whitespace / RS, kept as is
    raw: bytes  # the JSON text (UTF-8), or a line that is not JSON
    doc: object  # the parsed document, or NOT_JSON
    after: bytes = b""  # the line ending, kept as is


def starts_like_json(body: bytes) -> bool:
    """True if `body`, after a UTF-8 BOM, whitespace and RS, opens an object or array.

    A regex match, so no copy of the body is made just to look at its start.
    """
    return _JSON_OPENING.match(body) is not None


def _as_utf8(body: bytes, charset: str) -> bytes:
    """The body as a client decoding its declared charset reads it, in UTF-8, without a BOM."""
    if body.isascii():
        return body
    return body.decode(charset, "replace").removeprefix("\ufeff").encode("utf-8")


def _parsed(raw: bytes) -> object:
    """The document in `raw`; NOT_JSON if it is no JSON text at all.

    A JSON text the safe parser refuses (duplicate keys, too deep, lone surrogate) is refused
    here too: a client may read it differently, and scanning it for tokens alone would show
    its legacy plaintext.
    """
    try:
        return parse_json(raw)
    except UnsafeBody as exc:
        if exc.reason == "invalid_json":
            return NOT_JSON
        raise


def _line_pieces(data: bytes) -> list[JsonPiece]:
    """One piece per line (CR, LF or CRLF); a line that is no JSON text gets NOT_JSON.

    A blank line (JSON whitespace only) is NOT_JSON with an empty `raw`.
    """
    pieces: list[JsonPiece] = []
    for line in data.splitlines(keepends=True):
        content = line.rstrip(b"\r\n")
        text = content.lstrip(_LINE_LEAD)
        before, after = content[: len(content) - len(text)], line[len(content) :]
        doc = _parsed(text) if text.strip(_JSON_SPACE) else NOT_JSON
        pieces.append(JsonPiece(before, text, doc, after))
    return pieces


def is_blank(raw: bytes) -> bool:
    """True if `raw` is JSON whitespace only (space, tab, CR, LF)."""
    return not raw.strip(_JSON_SPACE)


def json_pieces(body: bytes, kind: BodyKind) -> list[JsonPiece]:
    """The body as JSON texts (UTF-8): one document, else one piece per line.

    A line that is not one JSON text is a NOT_JSON piece: the caller decides whether that is
    acceptable (`response._transform_sniffed`). Raises UnsafeBody for a JSON text the safe
    parser refuses, or a charset in which tokens could hide.
    """
    if kind.charset is None:
        raise UnsafeBody("unsupported_charset")
    _refuse_wide(body)
    data = _as_utf8(body, kind.charset)
    doc = _parsed(data)
    if doc is not NOT_JSON:
        return [JsonPiece(b"", data, doc)]
    return _line_pieces(data)


def _escape_non_ascii(match: re.Match[str]) -> str:
    encoded = match.group().encode("utf-16-be")
    return "".join(f"\\u{encoded[i]:02x}{encoded[i + 1]:02x}" for i in range(0, len(encoded), 2))


def as_charset(json_utf8: bytes, charset: str) -> bytes:
    """JSON written as UTF-8, fit for a body declared in `charset` (ASCII-compatible).

    Outside UTF-8, every non-ASCII character becomes a JSON unicode escape: valid JSON, and
    ASCII reads the same in every charset we accept.
    """
    if charset in _UTF8_CODECS or json_utf8.isascii():
        return json_utf8
    text = _NON_ASCII.sub(_escape_non_ascii, json_utf8.decode("utf-8"))
    return text.encode("ascii")

"""Which transform a body gets, from its Content-Type (parsed by aiohttp, not by us).

    application/json, */*+json, */x-json,       → the JSON walk (selectors + tokens)
    text/json
    text/html, */xml, */*+xml, xhtml            → token substitution, HTML/XML-escaped; XML
                                                 types walked with `xml:` selectors when any
                                                 are configured (`response_xml`)
    text/csv / text/tab-separated-values       → token substitution keeping CSV/TSV valid
    other *json* (NDJSON, json-seq, …)          → token substitution, JSON-string-escaped
    anything else, or no Content-Type          → token substitution; JSON-escaped when the body
                                                 starts like JSON ({ [ "), else inserted as is

A non-JSON kind is not the last word: a body that may hold selected keys is still walked as
JSON (whole, or line by line; `json_lines` marks the NDJSON family), because JSON clients parse
what they get whatever the header says; outside HTML/XML/CSV/TSV one that is not JSON
throughout is refused (`response.transform_response`).

Charsets: tokens are ASCII and are searched for as bytes, which is only sound in an
ASCII-compatible charset where no other byte sequence decodes to ASCII. UTF-8, US-ASCII,
ISO-8859-x and windows-125x qualify; anything else (UTF-16/32, UTF-7, unknown names) is refused.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from dataclasses import dataclass
from typing import Final

from proxy.transform.header_values import parse_mimetype

__all__ = ["BodyKind", "classify", "looks_wide"]

_JSON_SUBTYPES: Final = frozenset({"json", "x-json"})
#: One JSON document per line (or per RS-prefixed record): walked line by line when sniffed.
_JSON_LINES_SUBTYPES: Final = frozenset(
    {"x-ndjson", "ndjson", "jsonl", "x-jsonl", "jsonlines", "x-jsonlines", "json-seq"}
)
_SAFE_CODECS: Final = frozenset(
    {"utf-8", "utf-8-sig", "ascii"}
    | {f"iso8859-{n}" for n in (*range(1, 12), *range(13, 17))}
    | {f"cp{n}" for n in range(1250, 1259)}
)


@dataclass(frozen=True, slots=True)
class BodyKind:
    """How to treat a body: JSON walk or text substitution, escaping, and charset."""

    json: bool
    escape: str  # "json" | "html" | "csv" | "tsv" | "plain" | "sniff"
    charset: str | None  # a safe codec name; None = a charset we refuse
    delimiter: str = ","
    json_lines: bool = False  # an NDJSON-family type: one JSON document per line
    #: Declared text (`text/*`) or JSON-like: text by intent, whatever stray bytes it holds.
    text: bool = False
    #: multipart/* or message/*: parts a byte search cannot see into (response_parts.py).
    container: bool = False
    #: An XML type (*/xml, */*+xml; not text/html): parsed when `xml:` selectors exist.
    xml: bool = False


def _codec(name: str | None) -> str | None:
    if not name:
        return "utf-8"
    try:
        codec = codecs.lookup(name.strip().strip('"')).name
    except LookupError:
        return None
    return codec if codec in _SAFE_CODECS else None


_WIDE_BOMS: Final = (
    codecs.BOM_UTF32_LE,
    codecs.BOM_UTF32_BE,
    codecs.BOM_UTF16_LE,
    codecs.BOM_UTF16_BE,
)


def _wide_units(encoding: str) -> tuple[re.Pattern[bytes], tuple[bytes, ...], int]:
    """A regex for leading JSON whitespace in `encoding`, how `{ [ "` look there, unit size.

    Built from the code units themselves, so it matches exactly what `json.loads(bytes)`
    decodes as whitespace. The quantifier is possessive: one pass over a long run, no
    backtracking (a portal can pad with megabytes of it).
    """
    spaces = b"|".join(re.escape(char.encode(encoding)) for char in " \t\r\n")
    starts = tuple(char.encode(encoding) for char in '{["')
    return re.compile(b"(?:" + spaces + b")*+"), starts, len(starts[0])


#: Per BOM-less encoding `json.detect_encoding` can answer: whitespace regex, openers, unit.
_WIDE_JSON: Final = {
    encoding: _wide_units(encoding)
    for encoding in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
}


def looks_wide(body: bytes) -> bool:
    """True if readers would decode `body` as UTF-16/32 text: a BOM, or JSON in NUL-padded bytes.

    `json.loads(bytes)` and requests' `guess_json_utf` look at the first four bytes, whatever
    the Content-Type says; tokens and key names in such a body never match a byte search.
    All leading JSON whitespace is skipped, however long: a fixed window let a padded document
    through. Binary data that merely starts with NULs (and does not continue with `{`, `[` or
    `"`) is not text, so a download is not refused for it. A body that is nothing but wide
    whitespace (perhaps cut mid-character) counts as wide: it holds no data worth passing, and
    an answer that flips once more bytes arrive would let a short peek be fooled.

    Cost for an ordinary UTF-8 body: one `detect_encoding` on four bytes, nothing else.
    """
    encoding = json.detect_encoding(body[:4])
    if not encoding.startswith(("utf-16", "utf-32")):
        return False
    if body.startswith(_WIDE_BOMS):
        return True
    spaces, starts, unit = _WIDE_JSON[encoding]
    match = spaces.match(body)
    end = 0 if match is None else match.end()  # `*+` always matches; None only for mypy
    rest = len(body) - end
    return rest < unit or body.startswith(starts, end)


@functools.lru_cache(maxsize=256)
def classify(content_type: str | None) -> BodyKind:  # noqa: PLR0911 - a lookup table
    """Classify a Content-Type header value (None or empty: unknown, sniffed per body)."""
    if not content_type:
        return BodyKind(json=False, escape="sniff", charset="utf-8")
    mime = parse_mimetype(content_type)
    charset = _codec(mime.parameters.get("charset"))
    sub, suffix = mime.subtype.lower(), mime.suffix.lower()
    if sub in _JSON_SUBTYPES or suffix == "json":
        return BodyKind(json=True, escape="json", charset=charset)
    if sub in {"html", "xml", "xhtml"} or suffix == "xml":
        return BodyKind(json=False, escape="html", charset=charset, xml=sub != "html")
    if sub == "csv":
        return BodyKind(json=False, escape="csv", charset=charset)
    if sub == "tab-separated-values":
        return BodyKind(json=False, escape="tsv", charset=charset, delimiter="\t")
    if "json" in sub or "json" in suffix:
        lines = sub in _JSON_LINES_SUBTYPES
        return BodyKind(json=False, escape="json", charset=charset, json_lines=lines, text=True)
    main = mime.type.lower()
    return BodyKind(
        json=False,
        escape="sniff",
        charset=charset,
        text=main == "text",
        container=main in {"multipart", "message"},
    )

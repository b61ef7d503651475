"""Which responses must pass through the transform, and which may stream untouched.

Fail closed: only media types that cannot carry text PHI in a form the portal would write
(images, audio, video, fonts) stream through, uncompressed, and only if their first significant
bytes do not look like text (JSON, a token, UTF-16/32): a portal that labels JSON as an image
would otherwise hand it to clients unscanned (`fetch().json()` ignores the label). Leading JSON
whitespace does not count towards the peek: JSON readers skip any amount of it, so the handler
keeps reading past it (`blank_prefix`). Everything else, including a missing or unknown
Content-Type, is read in full (within limits) and scanned.
"""

from __future__ import annotations

import re
from typing import Final

from keys.token_format import TOKEN_PREFIX_BYTES
from proxy.transform.mediatype import looks_wide
from proxy.transform.textbody import starts_like_json

__all__ = ["PEEK_BYTES", "blank_prefix", "is_streamable", "looks_like_text", "media_type"]

#: How many significant bytes (after leading whitespace) are read before deciding it is media.
PEEK_BYTES: Final = 512

_STREAMABLE_PREFIXES = ("image/", "audio/", "video/", "font/")
_UTF8_BOM: Final = b"\xef\xbb\xbf"
#: Prefixes that JSON APIs put before a body so a <script> tag cannot run it; the clients
#: (Angular's `)]}',`, the `for(;;);` / `while(1);` style) cut them off and parse the rest.
_XSSI_PREFIXES: Final = (b")]}'", b"for(;;);", b"while(1);")
#: What a JSON reader skips before a value (RS too: json-seq). Possessive: one pass, no backtrack.
_BLANK: Final = re.compile(rb"[ \t\r\n\x1e]*+")


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header ('' when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_streamable(content_type: str | None) -> bool:
    """True for media types that are never scanned for PHI (binary media only)."""
    kind = media_type(content_type)
    return kind.startswith(_STREAMABLE_PREFIXES) and not kind.endswith(("+xml", "/svg"))


def blank_prefix(head: bytes | bytearray, start: int = 0) -> int:
    """Where the leading UTF-8 BOM, JSON whitespace and RS of `head` end.

    Resumable: pass the previous answer as `start` after more bytes arrived, so a long run of
    padding is scanned once. (UTF-16/32 whitespace is not skipped here: `looks_wide` treats
    a head made only of it as text, so it is refused, not streamed.)
    """
    if start == 0 and head.startswith(_UTF8_BOM):
        start = len(_UTF8_BOM)
    match = _BLANK.match(head, start)
    return start if match is None else match.end()


def looks_like_text(head: bytes) -> bool:
    """True if a body labelled as media is text, not media: JSON, a token, UTF-16/32, or blank.

    A head that is nothing but whitespace (not empty) is no media format either; refusing it
    costs nothing real and means no amount of padding can pass as an image.
    """
    start = blank_prefix(head)
    if head and start == len(head):
        return True
    if head.startswith(_XSSI_PREFIXES, start):  # JSON behind an anti-hijacking prefix
        return True
    return starts_like_json(head) or TOKEN_PREFIX_BYTES in head or looks_wide(head)

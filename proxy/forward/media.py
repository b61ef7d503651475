"""Which responses must pass through the transform, and which may stream untouched.

Fail closed: only media types that cannot carry text PHI in a form the portal would write
(images, audio, video, fonts) stream through, uncompressed, and only if their first bytes do
not look like text (JSON, a token, UTF-16/32): a portal that labels JSON as an image would
otherwise hand it to clients unscanned (`fetch().json()` ignores the label). Everything else,
including a missing or unknown Content-Type, is read in full (within limits) and scanned.
"""

from __future__ import annotations

from typing import Final

from keys.token_format import TOKEN_PREFIX_BYTES
from proxy.transform.mediatype import looks_wide
from proxy.transform.textbody import starts_like_json

__all__ = ["PEEK_BYTES", "is_streamable", "looks_like_text", "media_type"]

#: How much of a streamed body is read before deciding it really is media.
PEEK_BYTES: Final = 512

_STREAMABLE_PREFIXES = ("image/", "audio/", "video/", "font/")


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header ('' when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_streamable(content_type: str | None) -> bool:
    """True for media types that are never scanned for PHI (binary media only)."""
    kind = media_type(content_type)
    return kind.startswith(_STREAMABLE_PREFIXES) and not kind.endswith(("+xml", "/svg"))


def looks_like_text(head: bytes) -> bool:
    """True if a body labelled as media starts like JSON, holds a token, or is UTF-16/32 text."""
    return starts_like_json(head) or TOKEN_PREFIX_BYTES in head or looks_wide(head)

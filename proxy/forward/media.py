"""Which responses must pass through the transform, and which may stream untouched.

Fail closed: only media types that cannot carry text PHI in a form the portal would write
(images, audio, video, fonts) stream through. Everything else, including a missing or unknown
Content-Type, is read in full (within limits) and scanned.
"""

from __future__ import annotations

__all__ = ["is_streamable", "media_type"]

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

"""The one spelling a bearer token may have: three segments of canonical base64url.

PyJWT decodes segments with Python's lenient base64 decoder, which accepts `=` padding, skips
characters outside the alphabet and ignores the unused low bits of the last character. So one
signed token has many spellings that all verify (`sig` and `sig==`, or `…Q` and `…R` at the end):
each is a different string to the verified-token cache, the logs, and anything that compares
tokens by their text, and none of them is what the identity provider issued. JWS (RFC 7515 §2)
uses base64url without padding, and RFC 4648 §3.5 makes the canonical form the only valid one,
so anything else is refused before PyJWT reads it.
"""

from __future__ import annotations

import base64
import re

from proxy.identity.errors import AuthenticationError

__all__ = ["check_compact_form"]

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_SEGMENTS = 3  # header.payload.signature (five would be an encrypted JWE, never accepted)


def _decodable(segment: str) -> bool:
    """Only base64url characters (padding aside), in a length some encoder could write."""
    bare = segment.rstrip("=")
    return _SEGMENT.fullmatch(bare) is not None and len(bare) % 4 != 1


def _canonical(segment: str) -> bool:
    """True when `segment` is exactly what base64url of its bytes gives: unpadded, no spare bits."""
    partial = len(segment) % 4
    if "=" in segment:
        return False
    if partial == 0:
        return True  # whole groups of four: every bit is used
    # The last group (two or three characters) carries unused low bits, which must be zero.
    tail = segment[-partial:]
    raw = base64.urlsafe_b64decode(tail + "=" * (4 - partial))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") == tail


def check_compact_form(token: str) -> None:
    """Raise AuthenticationError unless `token` is `header.payload.signature` in canonical form.

    `malformed`: not three segments of base64url characters in lengths an encoder can write.
    `noncanonical_encoding`: `=` padding, or a last character with unused bits set: another
    spelling of bytes the identity provider wrote differently.
    """
    segments = token.split(".")
    if len(segments) != _SEGMENTS or not all(_decodable(part) for part in segments):
        raise AuthenticationError("malformed")
    if not all(_canonical(part) for part in segments):
        raise AuthenticationError("noncanonical_encoding")

"""A request body's text as the portal could read it, whatever its label says.

The portal, not the proxy, decides how a body is decoded: it honours the declared charset
(`charset=utf-16`, `utf-7`, …), and many JSON readers (Python's `json.loads` on bytes, RFC 4627
detection) also follow a byte-order mark or the NUL pattern of UTF-16/32 text without one. A
guard that reads such a body as UTF-8 sees no field names at all, and the portal then stores the
PHI in clear. So before the guard looks for PHI it decodes the body the same way, and refuses a
charset it cannot decode (the portal might).
"""

from __future__ import annotations

import codecs
import json
from typing import Final

from aiohttp.helpers import parse_mimetype

from proxy.transform.errors import RequestRejected

__all__ = ["UTF8_CHARSETS", "declared_charset", "portal_readable_text"]

#: Charset names under which the body's bytes are read as they are (ASCII is a subset of UTF-8).
UTF8_CHARSETS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


def declared_charset(content_type: str | None) -> str | None:
    """The `charset` parameter of a Content-Type, lower-cased; None if absent."""
    if not content_type:
        return None
    charset = parse_mimetype(content_type).parameters.get("charset")
    return charset.strip().lower() if charset else None


def portal_readable_text(body: bytes, charset: str | None) -> bytes:
    """`body` decoded as the portal could decode it, as UTF-8 without a byte-order mark.

    Returns `body` itself for plain UTF-8 (the common case: no copy). Raises RequestRejected:
    415 for a charset Python does not know (we cannot see what the portal would), 400 for
    bytes that do not decode under the charset they claim.
    """
    if charset is not None and charset not in UTF8_CHARSETS:
        try:
            encoding = codecs.lookup(charset).name
        except LookupError:
            raise RequestRejected(
                415,
                "the request body's charset is not one the proxy can read, so it cannot check "
                "the body for PHI; nothing was forwarded. Send UTF-8.",
                reason="unsupported_charset",
            ) from None
    else:
        encoding = json.detect_encoding(body)  # BOMs and UTF-16/32 NUL patterns; else utf-8
        if encoding == "utf-8":
            return body
    try:
        text = body.decode(encoding)
    except (UnicodeDecodeError, ValueError):
        raise RequestRejected(
            400,
            "the request body does not decode as the text its charset or byte-order mark "
            "claims, so it cannot be checked for PHI; nothing was forwarded. Send UTF-8.",
            reason="undecodable_body",
        ) from None
    return text.removeprefix("\ufeff").encode("utf-8", errors="surrogatepass")

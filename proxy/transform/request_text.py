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
from typing import Final, NamedTuple, NoReturn

from proxy.transform.errors import RequestRejected
from proxy.transform.header_values import parse_content_type, parse_mimetype

__all__ = ["UTF8_CHARSETS", "RequestMedia", "portal_readable_text", "request_media"]

#: Charset names under which the body's bytes are read as they are (ASCII is a subset of UTF-8).
UTF8_CHARSETS: Final = frozenset({"utf-8", "utf8", "us-ascii", "ascii"})


class RequestMedia(NamedTuple):
    """A request Content-Type as both of aiohttp's parsers read it (they agree, or we refuse)."""

    mimetype: str  #: "type/subtype" (with any "+suffix"), lower-cased; "" when no Content-Type
    charset: str | None  #: the `charset` parameter, stripped and lower-cased; None if absent
    boundary: str | None  #: the `boundary` parameter exactly as given; None if absent


_NO_MEDIA: Final = RequestMedia("", None, None)
_AMBIGUOUS: Final = (
    "the request's Content-Type header can be read in more than one way ({why}), so the proxy "
    "cannot be sure which charset, boundary or media type the portal would use; nothing was "
    "forwarded. Send a plain Content-Type such as `application/json; charset=utf-8`: each "
    "parameter once, no RFC 2231 `name*=` forms, no `;` inside quoted values."
)


def request_media(content_type: str | None) -> RequestMedia:
    """The media type, charset and boundary of a request Content-Type, or RequestRejected (415).

    Every request-side decision reads the Content-Type through here. aiohttp has two parsers:
    `parse_mimetype` (splits on `;`; the multipart reader's boundary) and `parse_content_type`
    (email-based: quoted strings, comments, RFC 2231; `request.content_type` and `.charset`).
    A header they read differently, or one that uses RFC 2231 (`charset*=`, `boundary*0=`) or
    names a parameter twice, is refused rather than guessed at (reason `ambiguous_content_type`).
    """
    if not content_type:
        return _NO_MEDIA
    split = parse_mimetype(content_type)
    names = [name for name, _ in split.parameters.items()]
    if any("*" in name for name in names):
        _ambiguous("an RFC 2231 parameter such as `charset*=`")
    if len(set(names)) != len(names):
        _ambiguous("a parameter given twice")
    email_type, email_params = parse_content_type(content_type)
    split_type = f"{split.type}/{split.subtype}" + (f"+{split.suffix}" if split.suffix else "")
    if split_type != email_type.lower():
        _ambiguous("the media type")
    for param in ("charset", "boundary"):
        if split.parameters.get(param) != email_params.get(param):
            _ambiguous(f"the {param} parameter")
    charset = split.parameters.get("charset")
    return RequestMedia(
        split_type,
        charset.strip().lower() if charset else None,
        split.parameters.get("boundary"),
    )


def _ambiguous(why: str) -> NoReturn:
    raise RequestRejected(415, _AMBIGUOUS.format(why=why), reason="ambiguous_content_type")


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

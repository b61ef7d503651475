"""Request framing refused before anything is read or forwarded (RFC 9112 §6.1).

aiohttp frames a request body as chunked whenever `chunked` is the last transfer coding, and
ignores the codings before it: `Transfer-Encoding: gzip, chunked` reaches the handler de-chunked
but still gzip-compressed, so the request guard cannot read it and the portal receives it with
no coding named. aiohttp also frames HTTP/1.0 bodies as chunked, although HTTP/1.0 has no
transfer codings: RFC 9112 §6.1 says such a message's framing is faulty, and a front end that
reads it by Content-Length or to the end of the connection sees other request boundaries than
we do (request smuggling). Both are answered with 400 and the connection is closed, so nothing
after the refused head is ever read as a request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxy.errors import ProxyError

if TYPE_CHECKING:
    from aiohttp import HttpVersion
    from multidict import CIMultiDictProxy

__all__ = ["BadFraming", "refuse_bad_framing"]


class BadFraming(ProxyError):
    """The body's framing cannot be trusted; nothing was forwarded and the connection closes."""

    status = 400
    code = "bad_transfer_encoding"


def refuse_bad_framing(version: HttpVersion, headers: CIMultiDictProxy[str]) -> None:
    """Raise BadFraming for Transfer-Encoding on HTTP/1.0, or other than one `chunked`."""
    if "Transfer-Encoding" not in headers:
        return
    if version < (1, 1):
        raise BadFraming(
            "Transfer-Encoding is not part of HTTP/1.0 (RFC 9112, section 6.1), so this request's "
            "length cannot be trusted; nothing was forwarded and the connection is closed: "
            "send the body with Content-Length, or use HTTP/1.1"
        )
    codings = [
        coding.strip().lower()
        for value in headers.getall("Transfer-Encoding")
        for coding in value.split(",")
    ]
    if codings != ["chunked"]:
        raise BadFraming(
            "the only transfer coding accepted is a single `chunked` (the proxy cannot check a "
            "body it cannot read, e.g. `Transfer-Encoding: gzip, chunked`); nothing was "
            "forwarded and the connection is closed: send the body as it is, with "
            "Content-Length or `Transfer-Encoding: chunked`, or compress it with "
            "`Content-Encoding: gzip`"
        )

"""Responses streamed untouched: no body (HEAD, 204, 304), or binary media that is media.

Only media types that cannot carry PHI text stream (`media.is_streamable`), uncompressed, and
only when their first bytes are a known media signature (`media.has_media_signature`, an
allow-list). The handler peeks at those bytes (`peek_media`); a body without a signature is
not refused but read on and transformed like any other, the peeked bytes first. The response
is registered under STREAMED_KEY before its head is sent: after that an error must not be
answered with a second response on the same connection; the app middleware cuts the
connection instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from proxy.forward.media import SIGNATURE_BYTES, is_streamable
from proxy.forward.response_headers import content_codings, standard_reason

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDict

__all__ = ["STREAMED_KEY", "has_no_body", "peek_media", "stream_untouched"]

#: The streamed response, set before its head is sent (see the module docstring).
STREAMED_KEY = web.RequestKey("phi_proxy_streamed_response", web.StreamResponse)
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_CHUNK: Final = 1 << 16


def has_no_body(method: str, upstream: aiohttp.ClientResponse) -> bool:
    """True for answers without a body (HEAD, 204, 304): nothing in them to scan."""
    return method == "HEAD" or upstream.status in _NO_BODY_STATUSES


async def peek_media(upstream: aiohttp.ClientResponse) -> bytes:
    """The first SIGNATURE_BYTES of a body labelled as uncompressed binary media, else b"".

    Fewer if the body is shorter. Compressed media cannot be peeked at: it is read, decoded and
    scanned like any body. Reads at most SIGNATURE_BYTES, so the peek needs no limit of its own;
    whatever it returns counts towards limits.max_response_body if the body is read on.
    """
    if content_codings(upstream.headers) not in {None, "identity"} or not is_streamable(
        upstream.headers.get("Content-Type")
    ):
        return b""
    head = bytearray()
    while len(head) < SIGNATURE_BYTES:
        chunk = await upstream.content.read(SIGNATURE_BYTES - len(head))
        if not chunk:
            break
        head += chunk
    return bytes(head)


async def stream_untouched(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    *,
    head: bytes | None,
    request_id: str,
) -> web.StreamResponse:
    """Send the portal's response as it comes: `head` (already read), then the rest.

    `head` is None for an answer without a body (`has_no_body`): nothing is read or sent.
    """
    response = web.StreamResponse(status=upstream.status, reason=standard_reason(upstream.status))
    response.headers.extend(headers)
    response.headers["X-Request-Id"] = request_id  # sent with the head
    length = upstream.headers.get("Content-Length")
    if length is not None and length.isdigit():
        response.content_length = int(length)
    request[STREAMED_KEY] = response
    await response.prepare(request)
    if head is not None:
        await response.write(head)
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response

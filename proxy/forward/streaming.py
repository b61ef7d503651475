"""Responses streamed untouched: no body (HEAD, 204, 304), or binary media that is media.

Only media types that cannot carry PHI text stream (`media.is_streamable`), uncompressed, and
only after their first significant bytes were seen to be media (`media.looks_like_text`
refuses JSON, tokens, UTF-16/32, whitespace and anti-hijacking prefixes). The response is
registered under STREAMED_KEY before its head is sent: after that an error must not be answered
with a second response on the same connection; the app middleware cuts the connection instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from aiohttp import web

from proxy.forward.media import PEEK_BYTES, blank_prefix, is_streamable, looks_like_text
from proxy.forward.response_headers import content_codings, standard_reason
from proxy.transform import UnsafeBody

if TYPE_CHECKING:
    import aiohttp
    from multidict import CIMultiDict

__all__ = ["STREAMED_KEY", "stream_media", "streams"]

#: The streamed response, set before its head is sent (see the module docstring).
STREAMED_KEY = web.RequestKey("phi_proxy_streamed_response", web.StreamResponse)
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_CHUNK: Final = 1 << 16


def streams(method: str, upstream: aiohttp.ClientResponse) -> bool:
    """Stream only what cannot carry PHI text: no body, or binary media."""
    if method == "HEAD" or upstream.status in _NO_BODY_STATUSES:
        return True
    # Compressed media cannot be peeked at: read, decode and scan it like any body.
    return content_codings(upstream.headers) in {None, "identity"} and is_streamable(
        upstream.headers.get("Content-Type")
    )


async def stream_media(
    request: web.Request,
    upstream: aiohttp.ClientResponse,
    headers: CIMultiDict[str],
    *,
    request_id: str,
    max_body: int,
) -> web.StreamResponse:
    """Send the portal's response as it comes, once its start proved it is media."""
    has_body = request.method != "HEAD" and upstream.status not in _NO_BODY_STATUSES
    head = await _peek(upstream, max_body) if has_body else b""
    if looks_like_text(head):
        raise UnsafeBody("mislabelled_media")  # before anything is sent
    response = web.StreamResponse(status=upstream.status, reason=standard_reason(upstream.status))
    response.headers.extend(headers)
    response.headers["X-Request-Id"] = request_id  # sent with the head
    length = upstream.headers.get("Content-Length")
    if length is not None and length.isdigit():
        response.content_length = int(length)
    request[STREAMED_KEY] = response
    await response.prepare(request)
    if has_body:
        await response.write(head)
        async for chunk in upstream.content.iter_chunked(_CHUNK):
            await response.write(chunk)
    await response.write_eof()
    return response


async def _peek(upstream: aiohttp.ClientResponse, max_body: int) -> bytes:
    """A media body's leading whitespace plus PEEK_BYTES more (fewer if it is shorter).

    JSON readers skip any amount of whitespace, so a fixed window could hold nothing but
    padding and the JSON after it would stream unscanned. Padding beyond
    limits.max_response_body is refused: no media format starts like that.
    """
    head = bytearray()
    blank = 0
    while len(head) - blank < PEEK_BYTES:
        chunk = await upstream.content.readany()
        if not chunk:
            break
        head += chunk
        blank = blank_prefix(head, blank)
        if blank > max_body:
            raise UnsafeBody("mislabelled_media")
    return bytes(head)

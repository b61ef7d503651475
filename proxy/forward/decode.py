"""Content-Encoding decoding with a hard output cap.

The proxy asks the portal for `Accept-Encoding: identity`, but a portal may compress anyway. A
body we must transform has to be decoded first, and a small gzip body can inflate to gigabytes
(a decompression bomb), so every decoder stops at `limit` bytes of output.

Request bodies are the other way round: aiohttp's server inflates a gzip or deflate body before
the handler reads it (and `client_max_size` bounds the inflated size), so the proxy forwards the
decoded body without the client's Content-Encoding. A coding aiohttp leaves alone would reach
the portal still compressed, unread by the request transform, so it is refused (415).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from proxy.errors import ProxyError, UpstreamUnavailable

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

__all__ = [
    "BodyTooLarge",
    "UnsupportedRequestEncoding",
    "decode_body",
    "encoding_is_supported",
    "refuse_undecoded_request_body",
]

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS
_SUPPORTED = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})
# What aiohttp's server inflates in every version we support: exactly one Content-Encoding line
# with exactly this (ASCII, case-insensitive) value. With two lines its C parser reads the last
# and its Python parser the first, so we accept one line only. `identity` needs no decoding.
_INFLATED_BY_SERVER = frozenset({"gzip", "deflate", "identity"})


class BodyTooLarge(UpstreamUnavailable):
    """The (decoded) upstream body exceeds the configured limit."""

    code = "upstream_body_too_large"


class UnsupportedRequestEncoding(ProxyError):
    """A request body in a coding aiohttp did not undo: nothing is forwarded (RFC 9110 415)."""

    status = 415
    code = "unsupported_request_encoding"


def refuse_undecoded_request_body(headers: CIMultiDictProxy[str]) -> None:
    """Raise unless aiohttp's server has already decoded the body (or it was never encoded)."""
    values = headers.getall("Content-Encoding", [])
    if not values:
        return
    if len(values) == 1 and values[0].isascii() and values[0].lower() in _INFLATED_BY_SERVER:
        return
    raise UnsupportedRequestEncoding(
        "the request body's Content-Encoding is not a single gzip, deflate or identity; send "
        "it uncompressed. Nothing was forwarded"
    )


def _codings(content_encoding: str | None) -> list[str]:
    if not content_encoding:
        return []
    return [c.strip().lower() for c in content_encoding.split(",") if c.strip()]


def encoding_is_supported(content_encoding: str | None) -> bool:
    """True when every coding listed is one we can decode (gzip, deflate, identity)."""
    return all(coding in _SUPPORTED for coding in _codings(content_encoding))


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    decoder = zlib.decompressobj(wbits)
    out = decoder.decompress(data, limit + 1)
    if len(out) > limit or decoder.unconsumed_tail:
        raise BodyTooLarge("the portal's compressed response inflates beyond the size limit")
    out += decoder.flush()
    if len(out) > limit:
        raise BodyTooLarge("the portal's compressed response inflates beyond the size limit")
    if not decoder.eof:
        raise UpstreamUnavailable(
            "the portal sent a truncated compressed body", code="upstream_bad_encoding"
        )
    return out


def _decode_one(data: bytes, coding: str, limit: int) -> bytes:
    try:
        if coding in {"gzip", "x-gzip"}:
            return _inflate(data, _GZIP_WBITS, limit)
        if coding == "deflate":
            # RFC 9110 says zlib-wrapped; some servers send raw deflate. Accept both.
            try:
                return _inflate(data, _ZLIB_WBITS, limit)
            except zlib.error:
                return _inflate(data, _RAW_DEFLATE_WBITS, limit)
    except zlib.error:
        raise UpstreamUnavailable(
            "the portal sent a corrupt compressed body", code="upstream_bad_encoding"
        ) from None
    return data


def decode_body(data: bytes, content_encoding: str | None, *, limit: int) -> bytes:
    """Undo every listed coding (last applied first), never producing more than `limit` bytes."""
    if content_encoding is None:  # the usual case: nothing to undo
        if len(data) > limit:
            raise BodyTooLarge("the portal's response is larger than limits.max_response_body")
        return data
    codings = _codings(content_encoding)
    if not encoding_is_supported(content_encoding):
        raise UpstreamUnavailable(
            "the portal used a Content-Encoding the proxy cannot decode on a body that may carry "
            "PHI",
            code="upstream_unknown_encoding",
        )
    for coding in reversed(codings):
        data = _decode_one(data, coding, limit)
    if len(data) > limit:
        raise BodyTooLarge("the portal's response is larger than limits.max_response_body")
    return data

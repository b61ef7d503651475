"""Response header hygiene: what the client reads from the portal's headers must match what we did.

A client decodes the body by every Content-Encoding line and picks its media type from the last
Content-Type line, while a proxy that reads only the first would check a different body than the
client shows (ciphertext or legacy plaintext passing untransformed). So conflicting framing
headers make the answer a 502, and every Content-Encoding line is undone together. Header values
themselves can carry tokens (a Location with a search by SSN), and headers end up in logs,
caches and browser history: tokens there are always masked, never decrypted.

A transformed response is marked `Cache-Control: no-store`, but some caches obey their own
header first: CDN-targeted cache headers (RFC 9213 `CDN-Cache-Control` and `*-CDN-Cache-Control`,
`Surrogate-Control`), nginx's `X-Accel-Expires` (which nginx's proxy cache puts before
Cache-Control), Akamai's `Edge-Control`, Fastly's `Fastly-Surrogate-Control` and LiteSpeed's
`X-LiteSpeed-Cache-Control`. Left in, any of them could let a cache in front of the proxy serve
one caller's decrypted answer to the next caller, or after a grant was revoked.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

from multidict import CIMultiDict

from keys.token_format import TOKEN_PATTERN, TOKEN_PREFIX
from proxy.errors import UnsafeBody
from proxy.forward.headers import connection_named, normalize_header_name

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

__all__ = [
    "ScrubbedHeaders",
    "content_codings",
    "drop_cdn_cache_headers",
    "refuse_conflicting_headers",
    "scrub_header_tokens",
    "standard_reason",
]

#: Headers that decide how the client reads the body; the portal may not hide them via Connection.
_BODY_HEADERS = frozenset({"content-encoding", "content-type", "content-length"})
_CDN_CACHE_HEADERS = frozenset(
    {
        "cdn-cache-control",
        "surrogate-control",
        "x-accel-expires",
        "edge-control",
        "fastly-surrogate-control",
        "x-litespeed-cache-control",
    }
)
_CDN_CACHE_SUFFIX = "-cdn-cache-control"
_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
#: The token prefix without its dot: `phi1%2E…`, `PHI1.…` still name a token to some reader.
_PREFIX_STEM = TOKEN_PREFIX.rstrip(".")


class ScrubbedHeaders(NamedTuple):
    """Headers with tokens masked, and counts for the access line (never values)."""

    headers: CIMultiDict[str]
    masked: int
    dropped: int


_PHRASES: dict[int, str] = {status.value: status.phrase for status in HTTPStatus}


def standard_reason(status: int) -> str:
    """The standard phrase for `status` ('' when none): the portal's own phrase is never sent."""
    return _PHRASES.get(status, "")


def _lists_media_types(content_type: str) -> bool:
    """True for a comma outside a closed quoted-string: a list, of which clients take the last."""
    return "," in content_type and "," in _QUOTED_STRING.sub("", content_type)


def _ambiguous_parameters(content_type: str) -> bool:
    """True for a parameter named twice or an RFC 2231 `name*` parameter.

    `charset=utf-8; charset=utf-16`: the proxy reads the first, some clients the last; a
    `charset*=` is read by some clients only.
    """
    if content_type.count(";") < 2 and "*" not in content_type:  # noqa: PLR2004
        return False  # at most one parameter, and no `name*`: the usual `…; charset=utf-8`
    seen: set[str] = set()
    for part in _QUOTED_STRING.sub('""', content_type).split(";")[1:]:
        name = part.split("=", 1)[0].strip().lower()
        if not name:
            continue
        if name in seen or name.endswith("*"):
            return True
        seen.add(name)
    return False


def refuse_conflicting_headers(headers: CIMultiDictProxy[str]) -> None:
    """Raise `UnsafeBody("conflicting_headers")` when client and proxy could read the body apart.

    Two Content-Type lines, a Content-Type listing media types, naming a parameter twice or
    using a `name*` parameter, or a Connection header naming Content-Type, Content-Encoding or
    Content-Length (which would hide it from the proxy only).
    """
    if "Content-Type" not in headers and "Connection" not in headers:
        return
    types = headers.getall("Content-Type", [])
    if (
        len(types) > 1
        or any(_lists_media_types(value) or _ambiguous_parameters(value) for value in types)
        or connection_named(headers) & _BODY_HEADERS
    ):
        raise UnsafeBody("conflicting_headers")


def content_codings(headers: CIMultiDictProxy[str]) -> str | None:
    """Every Content-Encoding line joined as one list, as the client would apply them."""
    values = headers.getall("Content-Encoding", [])
    return ", ".join(values) if values else None


def _is_cdn_cache_header(name: str) -> bool:
    normalized = normalize_header_name(name)
    return normalized in _CDN_CACHE_HEADERS or normalized.endswith(_CDN_CACHE_SUFFIX)


def drop_cdn_cache_headers(headers: CIMultiDict[str]) -> None:
    """Remove cache instructions that a cache in front obeys before our `no-store`."""
    for name in {name for name in headers if _is_cdn_cache_header(name)}:
        headers.popall(name, None)


def _header_safe(text: str) -> str:
    """The mask text without characters a header value cannot hold (CR, LF, other controls)."""
    return "".join(char if char.isprintable() else " " for char in text)


def _names_a_token(value: str) -> bool:
    """True if `value` holds the prefix stem in any case, or once percent-decoded."""
    return _PREFIX_STEM in value.lower() or (
        "%" in value and _PREFIX_STEM in unquote(value).lower()
    )


def scrub_header_tokens(headers: CIMultiDict[str], redacted_text: str) -> ScrubbedHeaders:
    """Mask every token in header values; drop a header whose name or value still has the prefix.

    Headers are masked for every caller, granted or not: a decrypted value in a Location or
    Content-Disposition would reach access logs, caches and browser history. After masking, a
    value that still spells `phi1` in any case or percent-encoded (`phi1%2Er%2E…`, a token we
    could not find) is dropped whole.
    """
    if not any(
        TOKEN_PREFIX in name.lower() or _names_a_token(value) for name, value in headers.items()
    ):
        return ScrubbedHeaders(headers, 0, 0)  # the usual case: nothing to copy
    replacement = _header_safe(redacted_text)
    out: CIMultiDict[str] = CIMultiDict()
    masked = dropped = 0
    for name, value in headers.items():
        clean, count = TOKEN_PATTERN.subn(lambda _match: replacement, value)
        masked += count
        if TOKEN_PREFIX in name.lower() or _names_a_token(clean):
            dropped += 1
            continue
        out.add(name, clean)
    return ScrubbedHeaders(out, masked, dropped)

"""Multipart and message responses: judged part by part, never rewritten.

A MIME parser hands each part to the client decoded (base64, quoted-printable, the part's
charset), where a byte search of the whole body sees nothing. So every part is decoded as such a
parser would and put through the same response transform as a body of its type. A multipart
body passes only if no part needs a change (no token to decide, no legacy plaintext to mask)
and every part could be checked; otherwise it is withheld (502): the proxy does not rewrite
MIME structures, and a body it cannot split or decode is one it cannot vouch for. A granted
caller's kept plaintext in a part is counted and audited by that part's transform.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Final

from proxy.transform.errors import RequestRejected, UnsafeBody
from proxy.transform.header_values import parse_mimetype
from proxy.transform.mediatype import classify
from proxy.transform.request_multipart import form_parts

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.transform.reveal import RevealContext

__all__ = ["judge_parts"]

_DEFAULT_PART_TYPE: Final = "text/plain; charset=us-ascii"  # RFC 2046 §5.1 default


def judge_parts(
    body: bytes,
    content_type: str,
    ctx: RevealContext,
    transform: Callable[[bytes, str | None, RevealContext], bytes],
) -> bytes:
    """`body` unchanged if no part needs a change; UnsafeBody otherwise (see module docstring).

    `transform` is `transform_response`, passed in to avoid an import cycle.
    """
    for part_type, encodings, payload in _leaves(body, content_type):
        if any(coding.strip().lower() not in {"", "identity"} for coding in encodings):
            raise UnsafeBody("unreadable_multipart")  # a compressed part: not looked into
        declared = part_type or _DEFAULT_PART_TYPE
        if classify(declared).charset is None:
            raise UnsafeBody("unreadable_multipart")  # utf-7 and the like hide key names
        if transform(payload, declared, ctx) is not payload:
            raise UnsafeBody("multipart_with_phi")
    return body


def _leaves(body: bytes, content_type: str) -> list[tuple[str | None, list[str], bytes]]:
    """(Content-Type, Content-Encoding values, decoded payload) of every leaf part."""
    mime = parse_mimetype(content_type)
    if mime.type.lower() == "message":
        message = BytesParser(policy=HTTP).parsebytes(body)
        if message.defects or message.is_multipart():
            raise UnsafeBody("unreadable_multipart")
        payload = message.get_payload(decode=True)
        types = message.get_all("content-type") or []
        return [
            (
                str(types[0]) if types else None,
                [str(v) for v in message.get_all("content-encoding") or []],
                payload if isinstance(payload, bytes) else b"",
            )
        ]
    try:
        parts = form_parts(body, content_type, mime.parameters.get("boundary"))
    except RequestRejected:
        raise UnsafeBody("unreadable_multipart") from None
    return [(part_type, codings, payload) for _names, part_type, payload, codings in parts]

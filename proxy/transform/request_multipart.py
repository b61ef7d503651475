"""The parts of a multipart request body, so the guard can check each one like a body.

A portal reads `multipart/form-data` fields as readily as JSON: a route that is not configured to
encrypt must not receive `ssn` as a plaintext form-data field, nor a JSON part that holds one.
Parsing is the standard library's MIME parser (the `email` package, HTTP policy), which also
undoes a part's Content-Transfer-Encoding, as a lenient portal would.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING

from proxy.transform.errors import RequestRejected

if TYPE_CHECKING:
    from email.message import Message

__all__ = ["form_parts"]


def form_parts(body: bytes, content_type: str) -> list[tuple[str, str | None, bytes]]:
    """(field name, part Content-Type, decoded part body) for every leaf part of `body`.

    Raises RequestRejected (400) when the body is not the multipart document its Content-Type
    announces: what we cannot split, we cannot check, and the portal's parser may still read it.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode(
        "latin-1", errors="replace"
    )
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart() or message.defects:
        raise RequestRejected(
            400,
            "the multipart request body cannot be split into its parts (missing or wrong "
            "boundary, or a malformed part), so it cannot be checked for PHI; nothing was "
            "forwarded.",
            reason="unreadable_multipart",
        )
    return [_part(leaf) for leaf in message.walk() if not leaf.is_multipart()]


def _part(leaf: Message) -> tuple[str, str | None, bytes]:
    name = leaf.get_param("name", header="content-disposition")
    payload = leaf.get_payload(decode=True)
    return (
        name if isinstance(name, str) else "",
        leaf.get("Content-Type"),
        payload if isinstance(payload, bytes) else b"",
    )

"""The parts of a multipart request body, so the guard can check each one like a body.

A portal reads `multipart/form-data` fields as readily as JSON: a route that is not configured to
encrypt must not receive `ssn` as a plaintext form-data field, nor a JSON part that holds one.
Parsing is the standard library's MIME parser (the `email` package, HTTP policy), which also
undoes a part's Content-Transfer-Encoding, as a lenient portal would.
"""

from __future__ import annotations

import warnings
from email.parser import BytesParser
from email.policy import HTTP
from typing import TYPE_CHECKING, Final

from proxy.transform.errors import RequestRejected
from proxy.transform.header_values import (
    content_disposition_filename,
    parse_content_disposition,
)
from proxy.transform.request_text import request_media

if TYPE_CHECKING:
    from email.message import Message

__all__ = ["Part", "form_parts"]

_UNREADABLE: Final = (
    "the multipart request body cannot be split into its parts (missing or wrong boundary, or "
    "a malformed part), so it cannot be checked for PHI; nothing was forwarded."
)
_AMBIGUOUS_NAME: Final = (
    "a part of the multipart request body names its field ambiguously (an RFC 2231 `name*=` or "
    "`filename*=` parameter, or `name` given twice), so parsers may disagree on which field it "
    'is; nothing was forwarded. Send one plain `name="…"` per part.'
)


Part = tuple[tuple[str, ...], str | None, bytes, list[str]]


def form_parts(body: bytes, content_type: str, boundary: str | None) -> list[Part]:
    """(candidate field names, Content-Type, decoded body, Content-Encodings) of every leaf part.

    `boundary` is the one `request_media` read from `content_type`; the MIME parser must split
    on exactly that boundary. Raises RequestRejected (400) when the body is not the multipart
    document its Content-Type announces, or a part is malformed or ambiguously named: what we
    cannot split, we cannot check, and the portal's parser may still read it.
    """
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode(
        "latin-1", errors="replace"
    )
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if (
        not boundary
        or not message.is_multipart()
        or message.defects
        or message.get_boundary() != boundary
    ):
        raise _unreadable()
    leaves = []
    for part in message.walk():
        if part.defects:
            raise _unreadable()
        if part is message:
            continue
        if part.is_multipart():  # nested: its boundary must be unambiguous too
            types = _raw(part, "content-type")
            nested = request_media(types[0] if types else None)
            if not nested.boundary or part.get_boundary() != nested.boundary:
                raise _unreadable()
            continue
        leaves.append(_part(part))
    return leaves


def _unreadable(message: str = _UNREADABLE) -> RequestRejected:
    return RequestRejected(400, message, reason="unreadable_multipart")


def _raw(part: Message, header: str) -> list[str]:
    """Every value of `header` in `part`, as sent (before the email package reinterprets it)."""
    return [str(value) for name, value in part.raw_items() if name.lower() == header]


def _part(leaf: Message) -> Part:
    names: set[str] = set()
    for disposition in _raw(leaf, "content-disposition"):
        keys = [item.partition("=")[0].strip().lower() for item in disposition.split(";")[1:]]
        if any("*" in key for key in keys) or keys.count("name") > 1:
            raise _unreadable(_AMBIGUOUS_NAME)
        with warnings.catch_warnings():  # aiohttp warns on a malformed header; we only read it
            warnings.simplefilter("ignore")
            _, params = parse_content_disposition(disposition)
        aiohttp_name = content_disposition_filename(params, "name")
        if aiohttp_name:
            names.add(aiohttp_name)
    email_name = leaf.get_param("name", header="content-disposition")
    if isinstance(email_name, str) and email_name:
        names.add(email_name)
    payload = leaf.get_payload(decode=True)
    part_types = _raw(leaf, "content-type")
    return (
        tuple(sorted(names)),
        part_types[0] if part_types else None,
        payload if isinstance(payload, bytes) else b"",
        _raw(leaf, "content-encoding"),
    )

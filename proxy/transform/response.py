"""The response transform: one parse, one walk, one serialization (or the original bytes).

`transform_response` is the only entry point the app needs. JSON bodies are walked with the
field policy, and so is JSON under another type when it may hold selected keys (whole, or line
by line); every other body is scanned for tokens (`textbody`). In the walk (`walk.py`):

* a value is *selected* by a JSON path ending at it (first path in the config wins), else by a
  key selector on its key, else by being inside a selected object/array (every scalar below a
  selected container inherits its class, unless a more specific rule applies further down);
* a selected string that starts with the token prefix is decided as a token; any other selected
  non-null scalar is legacy plaintext (numbers and booleans included);
* any other string, and every object key, that contains the prefix has each token decided in
  place; if the prefix is still there afterwards (a malformed token) the whole string is masked;
* a selected object the caller may not see in plaintext (class, record practice) becomes the
  class's mask as a whole: its keys are PHI too (`{"HIV positive": true}`);
* nothing changes → the caller gets the exact bytes it passed in.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import orjson

from proxy.transform.errors import UnsafeBody
from proxy.transform.jsonsafe import parse_json
from proxy.transform.mediatype import classify
from proxy.transform.textbody import (
    NOT_JSON,
    as_charset,
    json_pieces,
    starts_like_json,
    transform_text,
)
from proxy.transform.walk import Walk

if TYPE_CHECKING:
    from proxy.transform.mediatype import BodyKind
    from proxy.transform.reveal import RevealContext

__all__ = ["transform_json", "transform_response"]

_LONG_INTEGER: Final = re.compile(rb"(?<![\d.])\d{20,}(?![\d.eE])")


def transform_response(body: bytes, content_type: str | None, ctx: RevealContext) -> bytes:
    """Decrypt-or-mask every PHI value in a response body for the caller in `ctx`.

    Returns `body` itself when nothing needs to change. Raises UnsafeBody when the body
    cannot be processed safely (the caller answers 502 and sends none of it).
    """
    kind = classify(content_type)
    if kind.json and kind.charset is not None:
        if not ctx.policy.may_need_transform(body):
            return body
        return transform_json(body, ctx)
    if (
        kind.charset is not None
        and starts_like_json(body)
        and ctx.policy.may_hold_selected_keys(body)
    ):
        walked = _transform_sniffed(body, kind, ctx)
        if walked is not None:
            return walked
    return transform_text(body, kind, ctx)


def transform_json(body: bytes, ctx: RevealContext) -> bytes:
    """The JSON path of `transform_response` (body known to be JSON)."""
    return _walk_document(parse_json(body), body, ctx)


def _transform_sniffed(body: bytes, kind: BodyKind, ctx: RevealContext) -> bytes | None:
    """Walk JSON served under a non-JSON type (whole, or per line); None if it is not JSON.

    JSON clients parse a body whatever its Content-Type says, so a token scan alone would
    hand them the legacy plaintext of selected fields.
    """
    pieces = json_pieces(body, kind)
    if pieces is None:
        return None
    utf8_kind = replace(kind, charset="utf-8")  # the pieces are UTF-8 now
    out: list[bytes] = []
    changed = False
    for piece in pieces:
        if piece.doc is NOT_JSON:
            new = transform_text(piece.raw, utf8_kind, ctx)
        else:
            new = _walk_document(piece.doc, piece.raw, ctx)
        changed = changed or new is not piece.raw
        out += (piece.before, new, piece.after)
    if not changed:
        return body
    return as_charset(b"".join(out), kind.charset or "utf-8")


def _walk_document(doc: object, body: bytes, ctx: RevealContext) -> bytes:
    """Decide every value of `doc` (parsed from `body`); `body` itself if nothing changed."""
    walk = Walk(ctx)
    result = walk.value(doc, 0, None, None, walk.initial, None)
    if not walk.changed:
        return body
    if walk.lossy and _LONG_INTEGER.search(body):
        # orjson read an integer beyond 64 bits as a float; rewriting would change it.
        raise UnsafeBody("number_out_of_range")
    return orjson.dumps(result)

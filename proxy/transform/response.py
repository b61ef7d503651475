"""The response transform: one parse, one walk, one splice (or the original bytes).

`transform_response` is the only entry point the app needs. UTF-16/32-looking bodies (BOM or
NULs in the first four bytes) are refused. JSON bodies are walked with the field policy, and so
is JSON under another type when it may hold selected keys (whole, or line by line). Outside
HTML/XML/CSV/TSV such a body must be JSON throughout (NDJSON-family: or lines without selected
key names), else 502 `invalid_json`: a token scan would show legacy plaintext to a client that
parses what we could not. Every other body is scanned for tokens (`textbody`). In the walk
(`walk.py`):

* a value is *selected* by a JSON path ending at it (first path in the config wins), else by a
  key selector on its key, else by being inside a selected object/array (every scalar below a
  selected container inherits its class, unless a more specific rule applies further down);
* a selected string that starts with the token prefix is decided as a token; any other selected
  non-null scalar is legacy plaintext (numbers and booleans included);
* any other string, and every object key, that contains the prefix has each token decided in
  place; if the prefix is still there afterwards (a malformed token) the whole string is masked;
* a selected object the caller may not see in plaintext (class, record practice) becomes the
  class's mask as a whole: its keys are PHI too (`{"HIV positive": true}`);
* a `remove` mask leaves the member or element out, and an object or array that leaves empty
  goes too (FHIR forbids null); where nothing can be left out, it is the redacted text;
* nothing changes → the caller gets the exact bytes it passed in; otherwise only the decided
  values are rewritten (`splice`), every other byte comes back as it came.

XML bodies are decided by `response_xml` when the policy has `xml:` selectors (the same rules,
over elements and attributes); without them they are markup, token-scanned.

JSON bodies are decided by the compiled core when it is installed (`native_json`), by the walk
otherwise and whenever the compiled core gives up: the same bytes and facts either way.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Final

import orjson

from keys.token_format import TOKEN_PATTERN_BYTES, TOKEN_PREFIX_BYTES
from proxy.transform.errors import UnsafeBody
from proxy.transform.escaped_tokens import (
    document_holds_escaped_token,
    json_may_hold_escaped_token,
)
from proxy.transform.header_values import parse_mimetype
from proxy.transform.jsonsafe import parse_json
from proxy.transform.mediatype import classify, looks_wide
from proxy.transform.response_parts import judge_parts
from proxy.transform.response_xml import reads_as_xml, transform_xml
from proxy.transform.splice import splice
from proxy.transform.textbody import (
    NOT_JSON,
    as_charset,
    is_blank,
    json_pieces,
    starts_like_json,
    transform_text,
)
from proxy.transform.walk import Walk

if TYPE_CHECKING:
    from proxy.transform.mediatype import BodyKind
    from proxy.transform.reveal import RevealContext
    from proxy.transform.textbody import JsonPiece

__all__ = ["transform_json", "transform_json_pure", "transform_response"]

#: Kinds whose bodies are markup or tables: braces and field names are normal there.
_MARKUP_KINDS: Final = frozenset({"html", "csv", "tsv"})
_CODE_SUBTYPES: Final = frozenset({"javascript", "x-javascript", "ecmascript", "css"})
#: An object with a quoted key, or an array of objects/strings/arrays: where JSON carries data.
#: Plain text such as "Error [code 5]: invalid ssn" has neither and stays token-scanned.
_JSON_CONTAINER: Final = re.compile(rb'\{\s*"|\[\s*[{"\[]')
#: A JSON string value that is exactly one token (a token followed by text is plaintext too).
_WHOLE_TOKEN_VALUE: Final = re.compile(b'"' + TOKEN_PATTERN_BYTES.pattern + b'"')
_JSON_BLANKS: Final = (b" ", b"\t", b"\r", b"\n")
#: A JSON member name: a quoted run of non-control bytes (escapes allowed), then a colon.
_JSON_MEMBER: Final = re.compile(rb'"((?:[^"\\\x00-\x1f]|\\.){1,256}+)"[ \t\r\n]*:')


def transform_response(body: bytes, content_type: str | None, ctx: RevealContext) -> bytes:
    """Decrypt-or-mask every PHI value in a response body for the caller in `ctx`.

    Returns `body` itself when nothing needs to change. Raises UnsafeBody when the body
    cannot be processed safely (the caller answers 502 and sends none of it).
    """
    if looks_wide(body):
        # JSON readers decode it as UTF-16/32 whatever the header says; key names and tokens
        # never match a byte search there.
        raise UnsafeBody("unsupported_charset")
    kind = classify(content_type)
    if kind.json and kind.charset is not None:
        if not ctx.policy.may_need_transform(body, content_type):
            return body
        return transform_json(body, ctx)
    if kind.charset is None:
        return transform_text(body, kind, ctx)  # refuses the charset
    if reads_as_xml(kind, ctx) and not starts_like_json(body):
        return transform_xml(body, kind, ctx)
    if kind.escape in _MARKUP_KINDS or _is_code(content_type):
        return _transform_markup(body, kind, ctx)
    return _transform_other(body, kind, content_type, ctx)


def _transform_other(
    body: bytes, kind: BodyKind, content_type: str | None, ctx: RevealContext
) -> bytes:
    """Any other type: walked where a client reads JSON, withheld where unsure, else scanned."""
    if kind.container and content_type:
        # Parts hidden from a byte search (base64, quoted-printable, any charset) that a MIME
        # parser hands to the client decoded: each is judged like a body of its own type.
        return judge_parts(body, content_type, ctx, transform_response)
    if (kind.json_lines or _JSON_CONTAINER.search(body) is not None) and (
        ctx.policy.may_hold_selected_keys(body)
    ):
        if _is_text(body, kind):
            walked = _transform_sniffed(body, kind, ctx, strict=True)
            if walked is not None:
                return walked
        elif _names_selected_member(body, ctx):
            # Binary by its bytes, yet it holds JSON members named like selected fields
            # (`)]}',\n{"ssn": …}` with one Latin-1 byte): clients that cut such bodies apart
            # would read legacy plaintext we did not walk.
            raise UnsafeBody("invalid_json")
    return transform_text(body, kind, ctx)


def _is_text(body: bytes, kind: BodyKind) -> bool:
    """True if `body` is text a client could parse or read.

    Text by intent (a `text/*` or JSON-like type, or a body that starts like JSON) stays text
    whatever stray bytes it holds: one NUL or one byte invalid in its charset must not switch
    off the walk (clients replace such bytes and read on). Otherwise: no NUL and cleanly
    decodable. Binary downloads (octet-stream, PDF) hold braces and high bytes too; they are
    token-scanned, not refused for failing to be JSON.
    """
    if kind.text or kind.json_lines or starts_like_json(body):
        return True
    if b"\x00" in body:
        return False
    try:
        body.decode(kind.charset or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _names_selected_member(body: bytes, ctx: RevealContext) -> bool:
    """True if `body` holds a selected JSON member whose value may be plaintext.

    A member is `"name": value` with a value that is not exactly one token and not null. Only
    quoted names followed by a colon count, compared exactly (after JSON unescaping and the
    policy's normalization) with the names key and path selectors use, so random bytes in a
    download almost never match (the over-broad byte prefilter refused ~1% of large compressed
    files). Names are decoded leniently so a stray byte cannot hide them.
    """
    selects = ctx.policy.selects_name
    for match in _JSON_MEMBER.finditer(body):
        start = match.end()
        while body[start : start + 1] in _JSON_BLANKS:
            start += 1
        if body.startswith(b"null", start) or _WHOLE_TOKEN_VALUE.match(body, start):
            continue  # a whole token is decided by the token scan; null holds nothing
        raw = match.group(1).decode("utf-8", "replace")
        try:
            name = orjson.loads(f'"{raw}"') if "\\" in raw else raw
        except orjson.JSONDecodeError:
            name = raw
        if isinstance(name, str) and selects(name):
            return True
    return False


def _is_code(content_type: str | None) -> bool:
    """Scripts and style sheets: a portal's front end, full of braces and field names.

    Refusing them would break the portal's pages; they are token-scanned like markup. The cost:
    JSONP (`callback({...})`) with legacy plaintext is not walked (THREAT_MODEL.md).
    """
    if not content_type:
        return False
    mime = parse_mimetype(content_type)
    return mime.subtype.lower() in _CODE_SUBTYPES


def _transform_markup(body: bytes, kind: BodyKind, ctx: RevealContext) -> bytes:
    """HTML/XML/CSV/TSV: walked only when all JSON (whole, or every line), else token-scanned.

    Braces and field names are normal in pages and tables, so they are no reason to refuse.
    """
    if starts_like_json(body) and ctx.policy.may_hold_selected_keys(body):
        walked = _transform_sniffed(body, kind, ctx, strict=False)
        if walked is not None:
            return walked
    return transform_text(body, kind, ctx)


def transform_json(body: bytes, ctx: RevealContext) -> bytes:
    """The JSON path of `transform_response` (body known to be JSON).

    The compiled core answers when it is installed and sure; otherwise (and always under
    `PHI_PROXY_PURE=1`) the pure-Python core: the same bytes, the same facts.
    """
    native = ctx.policy.native
    if native is not None:
        if json_may_hold_escaped_token(body) and document_holds_escaped_token(parse_json(body)):
            raise UnsafeBody("escaped_token")
        out = native.transform(body, ctx)
        if out is not None:
            return out
    return transform_json_pure(body, ctx)


def transform_json_pure(body: bytes, ctx: RevealContext) -> bytes:
    """`transform_json` on the pure-Python core: the reference the compiled core must match."""
    return _walk_document(parse_json(body), body, ctx)


def _holds_plain_keys(raw: bytes, ctx: RevealContext) -> bool:
    """`may_hold_selected_keys` on `raw` without its tokens.

    A token names its class in clear (`phi1.r.<kid>.ssn.…`) and is decided by the token scan
    wherever it is; only a selected key name outside tokens can label legacy plaintext.
    """
    if TOKEN_PREFIX_BYTES in raw:
        raw = TOKEN_PATTERN_BYTES.sub(b"", raw)
    return ctx.policy.may_hold_selected_keys(raw)


def _unwalked(piece: JsonPiece, kind: BodyKind, ctx: RevealContext, *, strict: bool) -> bool:
    """True if `piece` is text (not JSON) that keeps the body from being walked as JSON.

    Strict: a non-blank line that is no JSON text, unless the type is NDJSON-family and the
    line holds no selected key name (it is token-scanned on its own). Not strict (markup): any
    non-blank non-JSON line, as before.
    """
    if piece.doc is not NOT_JSON:
        return False
    if not strict:
        return bool(piece.raw.strip())
    if is_blank(piece.raw):
        return False
    return not kind.json_lines or _holds_plain_keys(piece.raw, ctx)


def _transform_sniffed(
    body: bytes, kind: BodyKind, ctx: RevealContext, *, strict: bool
) -> bytes | None:
    """Walk JSON served under a non-JSON type (whole, or per line); None: token-scan it.

    JSON clients parse a body whatever its Content-Type says, so a token scan alone would
    hand them the legacy plaintext of selected fields. Strict (every type but markup): a body
    that is not JSON throughout (every non-blank byte in a walked JSON text; NDJSON-family:
    or on a line without selected key names) is refused with UnsafeBody("invalid_json")
    when it holds a selected key name outside tokens: we cannot tell what a lenient client
    reads out of it. Not strict: None whenever the body is not all JSON.
    """
    pieces = json_pieces(body, kind)
    if any(_unwalked(piece, kind, ctx, strict=strict) for piece in pieces) or all(
        piece.doc is NOT_JSON for piece in pieces
    ):
        if strict and _holds_plain_keys(body, ctx):
            raise UnsafeBody("invalid_json")
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
    """Decide every value of `doc` (parsed from `body`); `body` itself if nothing changed.

    Only the decided values are rewritten (`splice`): every other byte comes back as it came.
    """
    _refuse_escaped_tokens(doc, body)
    return splice(body, doc, Walk(ctx).document(doc))


def _refuse_escaped_tokens(doc: object, body: bytes) -> None:
    """Refuse `body` if a string of `doc` (parsed from it) spells a token with escapes.

    A JSON client that decodes such a string again (JSON inside JSON, a link, an HTML
    snippet) would read the ciphertext the transform could not see (`escaped_tokens`).
    """
    if json_may_hold_escaped_token(body) and document_holds_escaped_token(doc):
        raise UnsafeBody("escaped_token")

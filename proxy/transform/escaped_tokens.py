r"""Tokens spelled with escapes that a browser, a JavaScript engine or a URL decoder undoes.

`&#112;hi1.d.…` in HTML, `phi1%2Ed%2E…` in a link, `\x70hi1.…` or `\u0070hi1.…` in a
script, `\70 hi1.…` in CSS: the reader sees a token, while a byte search for `phi1.` sees
nothing and the ciphertext reaches a caller without a grant, a stable fingerprint of the value
for deterministic classes. So does a literal token whose next character is escaped
(`phi1.d.…abc\x2Ddef`): the scan stops at the escape and masks only the part before it,
leaving the escaped tail as a fingerprint.

JSON is read the way a JSON client reads it: every string (member names too) after JSON
decoding, so `"\\u0070hi1.…"` (JSON inside a JSON string), `"phi1%2E…"` in a link and
`"&#112;hi1.…"` in an HTML snippet count, while a single `\u0070` is decoded by the parser and
the transform decides the literal token it spells.

Such a body is refused (502, `escaped_token`), for every caller: the proxy does not rewrite
escaped text, and a portal that escapes tokens on purpose is rare enough to be told. Only the
escapes of the five prefix characters and of the characters a token is made of are looked
for. The compiled core's first look (core/src/escaped.rs, `may_hold_escaped_token`) runs at
memchr speed and is sound: only a body it calls suspect gets the precise check here, so both
transform cores refuse exactly the same bodies.
"""

from __future__ import annotations

import re
import string
from typing import Final

from keys.native import native_module
from keys.token_format import TOKEN_PREFIX_BYTES

__all__ = ["document_holds_escaped_token", "holds_escaped_token", "json_may_hold_escaped_token"]

#: Cheap first look, one pattern per kind of escape, each starting with a literal byte (which
#: the regular-expression engine finds at memchr speed): an escape of one of the prefix's five
#: characters. Only a body with one is searched with the full pattern below (~40x slower).
_PREFIX_CHAR_ESCAPES: Final = tuple(
    re.compile(pattern)
    for pattern in (
        rb"&#(?:0*(?:112|104|105|49|46)|[xX]0*(?:70|68|69|31|2[eE]))",
        rb"&period;",
        rb"%(?:25)*(?:70|68|69|31|2[eE])",
        # One literal backslash first, then any more: a leading `\\+` would make the engine try
        # every position instead of jumping from backslash to backslash.
        rb"\\\\*(?:[xXuU]|u\{)?0*(?:70|68|69|31|2[eE])",
    )
)
#: A literal prefix and the token characters after it (what the leftover masker would take).
_PREFIX_RUN: Final = re.compile(re.escape(TOKEN_PREFIX_BYTES) + rb"[A-Za-z0-9_.\-]*")


def _hex(code: int) -> bytes:
    """`code` as hex digits in either case, with any number of leading zeros."""
    digits = b"%x" % code
    return b"0*" + b"".join(
        b"[%s%s]" % (bytes([d]).lower(), bytes([d]).upper()) if chr(d).isalpha() else bytes([d])
        for d in digits
    )


def _escapes(char: str) -> list[bytes]:
    """Patterns of the escapes a reader decodes to `char`."""
    code = ord(char)
    forms = [
        rb"&#0*%d;?" % code,  # HTML decimal reference (the ; is optional to browsers)
        rb"&#[xX]%s;?" % _hex(code),  # HTML hexadecimal reference
        rb"%%(?:25)*%s" % _hex(code),  # percent-escape, also percent-escaped again
        rb"\\+[xX]%s" % _hex(code),  # JavaScript \xNN (any number of backslashes)
        rb"\\+[uU]%s" % _hex(code),  # JavaScript / JSON \uNNNN, also inside JSON strings
        rb"\\+u\{%s\}" % _hex(code),  # JavaScript \u{NN}
        rb"\\+%s\s?" % _hex(code),  # CSS \NN followed by an optional space
    ]
    if char == ".":
        forms.append(rb"&period;")
    return forms


def _spelled(char: str) -> bytes:
    """A pattern for `char` written as itself or as one of its escapes."""
    return b"(?:" + b"|".join([re.escape(char.encode()), *_escapes(char)]) + b")"


_PREFIX_SPELLED: Final = re.compile(b"".join(_spelled(c) for c in TOKEN_PREFIX_BYTES.decode()))
_TOKEN_CHARS: Final = string.ascii_letters + string.digits + "_.-"  # the token alphabet
#: An escape, at the very end of a literal token, of a character tokens are made of.
_ESCAPED_TOKEN_CHAR: Final = re.compile(
    b"|".join(form for char in _TOKEN_CHARS for form in _escapes(char))
)


#: A JSON `\uXXXX` escape of a printable ASCII character: it may spell part of an escape.
_JSON_ASCII_ESCAPE: Final = re.compile(rb"\\u00[2-7][0-9a-fA-F]")
#: Characters an escape starts with: a string without them holds none.
_ESCAPE_STARTS: Final = ("&", "%", "\\")

_NATIVE: Final = native_module()


def _first_look(body: bytes, *, json: bool) -> bool:
    """False only if the precise check would find nothing (compiled when installed)."""
    if _NATIVE is not None:
        return bool(_NATIVE.may_hold_escaped_token(body, json=json))
    if json and _JSON_ASCII_ESCAPE.search(body) is not None:
        return True
    return _holds_escaped_token(body)  # the precise text check is a sound first look too


def holds_escaped_token(body: bytes) -> bool:
    """True if a reader of `body` would decode escapes into a token or into a token's tail."""
    return _first_look(body, json=False) and _holds_escaped_token(body)


def json_may_hold_escaped_token(body: bytes) -> bool:
    """False only if no string of the JSON text `body`, once decoded, holds an escaped token.

    The cheap half of the JSON check: a body it calls suspect is parsed and each string judged
    by `document_holds_escaped_token`.
    """
    return _first_look(body, json=True)


def document_holds_escaped_token(doc: object) -> bool:
    """True if a string of the parsed JSON `doc` (a member name or a value) holds one."""
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if any(start in node for start in _ESCAPE_STARTS) and _holds_escaped_token(
                node.encode("utf-8", "surrogatepass")
            ):
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _holds_escaped_token(body: bytes) -> bool:
    """The precise check of `holds_escaped_token`: the regular expressions above."""
    if any(escape.search(body) is not None for escape in _PREFIX_CHAR_ESCAPES) and any(
        match.group() != TOKEN_PREFIX_BYTES for match in _PREFIX_SPELLED.finditer(body)
    ):
        return True
    if TOKEN_PREFIX_BYTES in body:
        for run in _PREFIX_RUN.finditer(body):
            if _ESCAPED_TOKEN_CHAR.match(body, run.end()) is not None:
                return True
    return False

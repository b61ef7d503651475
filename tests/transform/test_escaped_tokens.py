"""Escaped spellings of a token are found whatever mix of escapes spells them."""

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from keys.native import core_description, native_module
from keys.testing import make_keyring
from proxy.transform.escaped_tokens import (
    _holds_escaped_token,
    document_holds_escaped_token,
    holds_escaped_token,
    json_may_hold_escaped_token,
)

KEYRING = make_keyring(["practice-a"])
TOKEN = KEYRING.encrypt("practice-a", "ssn", "900-11-2222", deterministic=True)

ESCAPES = [
    lambda c: f"&#{ord(c)};",
    lambda c: f"&#{ord(c):03d}",
    lambda c: f"&#x{ord(c):x};",
    lambda c: f"&#X{ord(c):X};",
    lambda c: f"%{ord(c):02X}",
    lambda c: f"%25{ord(c):02x}",
    lambda c: f"\\x{ord(c):02x}",
    lambda c: f"\\u{ord(c):04x}",
    lambda c: f"\\\\u{ord(c):04X}",
    lambda c: f"\\u{{{ord(c):x}}}",
    lambda c: f"\\{ord(c):x} ",
]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\\&%"), max_size=40)


@st.composite
def escaped_prefix(draw):
    """`phi1.` with at least one of its characters escaped, each in any of the forms."""
    chosen = draw(st.lists(st.booleans(), min_size=5, max_size=5).filter(any))
    return "".join(
        draw(st.sampled_from(ESCAPES))(char) if escape else char
        for char, escape in zip("phi1.", chosen, strict=True)
    )


@given(escaped_prefix(), TEXT, TEXT)
def test_a_token_with_an_escaped_prefix_is_found(prefix, before, after):
    body = f"{before} {prefix}{TOKEN[5:]} {after}"
    assert holds_escaped_token(body.encode())


@given(st.sampled_from(ESCAPES), st.sampled_from("-_.aZ09"), TEXT)
def test_a_literal_token_with_an_escaped_next_character_is_found(escape, char, after):
    assert holds_escaped_token(f"{TOKEN[:30]}{escape(char)}{after}".encode())


@given(TEXT, TEXT)
def test_literal_tokens_and_text_without_escapes_are_not(before, after):
    assert not holds_escaped_token(f"{before} {TOKEN} {after}".encode())


def test_ordinary_escapes_around_tokens_are_not():
    """Entities, percent-escapes and JSON escapes of other characters are everyday text."""
    for body in (
        f"<a title=&quot;x&quot;>{TOKEN}</a> &amp; 100% off, a%20b",
        f'{{"note": "line\\nbreak", "t": "{TOKEN}\\""}}',
        f"url=/x?t={TOKEN}%26next%3D1",
    ):
        assert not holds_escaped_token(body.encode()), body


# JSON: each string is judged after JSON decoding, as a client that decodes it again reads it.

NATIVE = native_module()
needs_native = pytest.mark.skipif(
    NATIVE is None,
    reason=f"compares with the compiled core; this process runs the {core_description()}",
)
#: Escape-heavy text: what the first look must never wave through when the precise check would
#: not (random mixtures of the escape alphabet, prefix characters and token characters).
ESCAPE_SOUP = st.text(alphabet="&#%\\xXuU{};0123456789abcdefEphi.-_ period", max_size=60)


def _json_in_json(value: str, depth: int, ensure_ascii: bool) -> str:
    body = json.dumps({"note": value}, ensure_ascii=ensure_ascii)
    for _ in range(depth):
        body = json.dumps({"data": body}, ensure_ascii=ensure_ascii)
    return body


@given(escaped_prefix(), TEXT, st.integers(1, 3), st.booleans())
def test_a_token_spelled_with_escapes_inside_json_in_json_is_found(prefix, before, depth, ascii_):
    body = _json_in_json(f"{before}{prefix}{TOKEN[5:]}", depth, ascii_).encode()
    assert json_may_hold_escaped_token(body)
    doc = orjson.loads(body)
    # JSON inside JSON: the outer string is the inner document, spelled once more.
    assert document_holds_escaped_token(doc) or any(
        document_holds_escaped_token(orjson.loads(s)) for s in _strings(doc)
    )


@given(TEXT, TEXT, st.integers(0, 3), st.booleans())
def test_literal_tokens_in_json_in_json_are_left_to_the_transform(before, after, depth, ascii_):
    body = _json_in_json(f"{before} {TOKEN} {after}", depth, ascii_).encode()
    assert not document_holds_escaped_token(orjson.loads(body))


def test_a_single_json_escape_is_the_parsers_and_not_an_escaped_token():
    body = b'{"ssn": "\\u0070' + TOKEN[1:].encode() + b'"}'
    assert not document_holds_escaped_token(orjson.loads(body))


@needs_native
@given(
    st.one_of(
        ESCAPE_SOUP,
        st.builds(lambda a, p, b: a + p + b, ESCAPE_SOUP, escaped_prefix(), ESCAPE_SOUP),
    )
)
def test_the_compiled_first_look_is_sound_for_text(text):
    body = text.encode()
    if _holds_escaped_token(body):
        assert NATIVE.may_hold_escaped_token(body, json=False), body


@needs_native
@given(
    st.one_of(
        ESCAPE_SOUP,
        st.builds(lambda a, p, b: a + p + b, ESCAPE_SOUP, escaped_prefix(), ESCAPE_SOUP),
    ),
    st.integers(0, 2),
    st.booleans(),
)
def test_the_compiled_first_look_is_sound_for_json_strings(text, depth, ascii_):
    body = _json_in_json(text, depth, ascii_).encode()
    if document_holds_escaped_token(orjson.loads(body)):
        assert NATIVE.may_hold_escaped_token(body, json=True), body


@needs_native
@given(ESCAPE_SOUP)
def test_the_compiled_first_look_is_sound_for_json_escaped_character_by_character(text):
    r"""Every character as a `\uXXXX` escape: the spelling a cautious serializer may choose."""
    body = ('{"note": "' + "".join(f"\\u{ord(c):04x}" for c in text) + '"}').encode()
    if document_holds_escaped_token(orjson.loads(body)):
        assert NATIVE.may_hold_escaped_token(body, json=True), body


def _strings(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)

"""Escaped spellings of a token are found whatever mix of escapes spells them."""

from hypothesis import given
from hypothesis import strategies as st

from keys.testing import make_keyring
from proxy.transform.escaped_tokens import holds_escaped_token

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

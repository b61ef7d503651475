"""The media peek's decisions: leading whitespace never hides JSON, padded UTF-16/32 included."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.forward.media import blank_prefix, looks_like_text
from proxy.transform.mediatype import looks_wide

DOC = json.dumps({"ssn": "900-00-0000"})
WIDE = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
JSON_SPACE = st.text(alphabet=" \t\r\n", max_size=300)


@pytest.mark.parametrize("encoding", WIDE)
@given(padding=JSON_SPACE)
def test_padded_wide_json_is_wide_however_long_the_padding(encoding, padding):
    body = (padding + DOC).encode(encoding)
    assert looks_wide(body)
    assert looks_like_text(body)


@pytest.mark.parametrize("encoding", WIDE)
def test_wide_whitespace_alone_counts_as_wide(encoding):
    """Decision: nothing but wide whitespace (even cut mid-character) is refused, not passed."""
    blank = (" " * 50).encode(encoding)
    assert looks_wide(blank)
    assert looks_wide(blank + b"\x00")


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x01\x00\x01\x00" + bytes(range(256)),  # ICO
        b"\x00\x00\x00\x1cftypavif" + bytes(16),  # ISO BMFF
        b"\x89PNG\r\n\x1a\n",
        (" " * 10 + "hello").encode("utf-16-le"),  # wide, but no JSON value after the spaces
        DOC.encode(),  # UTF-8: not wide (the transform reads it as bytes)
        b"",
    ],
)
def test_other_bodies_are_not_wide(body):
    assert not looks_wide(body)


@given(padding=st.text(alphabet=" \t\r\n\x1e").map(str.encode))
def test_blank_prefix_covers_bom_whitespace_and_rs(padding):
    head = b"\xef\xbb\xbf" + padding + b"{"
    assert blank_prefix(head) == len(head) - 1
    assert looks_like_text(head)


def test_blank_prefix_resumes_where_it_stopped():
    head = bytearray(b" " * 10)
    first = blank_prefix(head)
    head += b"\n\n{"
    assert blank_prefix(head, first) == 12


@pytest.mark.parametrize("head", [b" ", b"\n" * 600, b"\xef\xbb\xbf", b"\x1e\r\n"])
def test_a_blank_head_is_not_media(head):
    assert looks_like_text(head)


def test_real_media_and_an_empty_body_are_media():
    assert not looks_like_text(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    assert not looks_like_text(b"")

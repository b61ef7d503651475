"""The media peek's decision: only a known media signature streams; text of any kind does not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from proxy.forward.media import SIGNATURE_BYTES, has_media_signature
from proxy.transform.mediatype import looks_wide

DOC = json.dumps({"ssn": "900-00-0000"})
WIDE = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
JSON_SPACE = st.text(alphabet=" \t\r\n", max_size=300)
#: What `String.prototype.trim` removes (ECMAScript WhiteSpace and LineTerminator), and RS.
JS_TRIM = " \t\n\v\f\r\x1e\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
JS_TRIM += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
#: Anti-hijacking and comment prefixes clients strip before parsing JSON.
PREFIXES = (
    "",
    ")]}'",
    ")]}',\n",
    "for(;;);",
    "for (;;);",
    "while(1);",
    "while (1);",
    "while(true);",
    "&&&START&&&",
    "/*-secure-\n",
    "{}&&",
)
ENCODINGS = ("utf-8", "utf-8-sig", "utf-16", "utf-32", *WIDE)

#: The start of a real file of each format the allow-list names.
REAL_HEADS = {
    "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "jpeg-jfif": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
    "jpeg-exif": b"\xff\xd8\xff\xe1\x12\x34Exif\x00\x00",
    "gif87a": b"GIF87a\x01\x00\x01\x00",
    "gif89a": b"GIF89a\x01\x00\x01\x00\x80\x00",
    "webp-lossy": b"RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00",
    "webp-lossless": b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00",
    "webp-extended": b"RIFF\x4a\x00\x00\x00WEBPVP8X\x0a\x00",
    "bmp": b"BM\x3a\x00\x00\x00\x00\x00\x00\x00\x36\x00\x00\x00",
    "ico": b"\x00\x00\x01\x00\x01\x00\x10\x10",
    "cur": b"\x00\x00\x02\x00\x01\x00\x20\x20",
    "tiff-le": b"II*\x00\x08\x00\x00\x00",
    "tiff-be": b"MM\x00*\x00\x00\x00\x08",
    "avif": b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00",
    "heic": b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00",
    "mp4": b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00",
    "mov": b"\x00\x00\x00\x14ftypqt  \x20\x05\x03\x00",
    "m4a": b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00",
    "3gp": b"\x00\x00\x00\x14ftyp3gp4\x00\x00\x00\x00",
    "webm": b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01",
    "ogg": b"OggS\x00\x02\x00\x00\x00\x00\x00\x00",
    "flac": b"fLaC\x00\x00\x00\x22",
    "mp3-id3": b"ID3\x04\x00\x00\x00\x00\x00\x23",
    "mp3-frame": b"\xff\xfb\x90\x64\x00\x00",
    "mp2-frame": b"\xff\xf3\x84\x64\x00\x00",
    "aac-adts": b"\xff\xf1\x50\x80\x02\x1f\xfc",
    "wav": b"RIFF\x24\x08\x00\x00WAVEfmt ",
    "avi": b"RIFF\x00\x10\x00\x00AVI LIST",
    "aiff": b"FORM\x00\x00\x10\x00AIFFCOMM",
    "midi": b"MThd\x00\x00\x00\x06\x00\x01\x00\x02",
    "woff": b"wOFF\x00\x01\x00\x00\x00\x00\x10\x00",
    "woff2": b"wOF2\x00\x01\x00\x00\x00\x00\x10\x00",
    "ttf": b"\x00\x01\x00\x00\x00\x0f\x00\x80\x00\x03",
    "ttf-apple": b"true\x00\x0f\x00\x80\x00\x03",
    "otf": b"OTTO\x00\x0c\x00\x80\x00\x03",
    "ttc": b"ttcf\x00\x01\x00\x00\x00\x00\x00\x02",
}


@pytest.mark.parametrize("head", REAL_HEADS.values(), ids=REAL_HEADS.keys())
def test_real_media_heads_have_a_signature(head):
    assert has_media_signature(head)
    assert has_media_signature(head + bytes(range(256)))


@pytest.mark.parametrize("head", REAL_HEADS.values(), ids=REAL_HEADS.keys())
def test_the_peek_holds_every_signature(head):
    """SIGNATURE_BYTES is enough: the decision never needs a byte past the peek."""
    assert has_media_signature(head[:SIGNATURE_BYTES])


@pytest.mark.parametrize("encoding", ENCODINGS)
@given(
    padding=st.text(alphabet=JS_TRIM, max_size=8),
    prefix=st.sampled_from(PREFIXES),
    doc=st.sampled_from([DOC, "[" + DOC + "]", '"900-00-0000"', "true", "null", "0", "phi1."]),
)
def test_text_never_has_a_signature(encoding, padding, prefix, doc):
    """JSON or a token, behind any prefix and `trim()` whitespace, in any JSON encoding."""
    text = (padding + prefix + doc).encode(encoding)
    assert not has_media_signature(text[:SIGNATURE_BYTES])
    assert not has_media_signature(text)


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b" ",
        b"\n" * 600 + REAL_HEADS["png"],  # whitespace before a signature: none at offset 0
        b"\xef\xbb\xbf" + REAL_HEADS["png"],  # nor a BOM
        b"\xff\xfe{\x00",  # UTF-16LE BOM: also an MPEG-1 Layer I sync, refused for that
        b"\xff\xfe\x00\x00{\x00\x00\x00",  # UTF-32LE BOM
        b"\xfe\xff\x00{",  # UTF-16BE BOM
        b"\x00\x00\xfe\xff\x00\x00\x00{",  # UTF-32BE BOM
        b"true",  # the JSON literal is not Apple's `true` sfnt
        b'true\n{"ssn": "900-00-0000"}',  # a JSON text sequence
        b"RIFF\x00\x00\x00\x00JSON{}",  # RIFF, but no media form
        b"FORM\x00\x00\x00\x00AIFC",  # not listed: read and scanned
        b'{"a"ftyp',  # `ftyp` at offset 4 after text, not after a box size
        b"\x00\x00\x00\x08ftyp",  # a box size below ftyp's minimum
        b"\xff\x0a\x00",  # JPEG XL codestream: not listed (read and scanned, not refused)
        b"\xff",  # one byte: no frame sync yet
        b"GIF8",  # a cut-off signature
        b"phi1.r.k1.ssn.AAAA",
    ],
)
def test_other_heads_have_no_signature(head):
    assert not has_media_signature(head)


# `looks_wide` (proxy.transform.mediatype) refuses UTF-16/32 JSON on the buffered path that a
# media-labelled body without a signature now takes.
@pytest.mark.parametrize("encoding", WIDE)
@given(padding=JSON_SPACE)
def test_padded_wide_json_is_wide_however_long_the_padding(encoding, padding):
    body = (padding + DOC).encode(encoding)
    assert looks_wide(body)
    assert not has_media_signature(body)


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

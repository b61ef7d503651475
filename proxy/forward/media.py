r"""Which responses may stream untouched: binary media that starts with a known media signature.

Fail closed, by an allow-list: a body labelled as binary media (images, audio, video, fonts)
streams through unscanned, uncompressed, only if its first bytes are the signature (magic number)
of a known media format (`has_media_signature`). Anything else labelled as media (JSON behind
an anti-hijacking prefix, padded or not, a token, UTF-16/32 text, or merely a format not listed
here) takes the ordinary path: read in full within limits and scanned, like
`application/octet-stream`. A list of what text looks like cannot be complete (`for (;;);`,
`while(1);`, `&&&START&&&`, leading `\f`/`\v`/NBSP that `String.prototype.trim` removes, …);
a list of what media looks like can.

The signatures are matched at offset 0, exactly: no leading whitespace or BOM is skipped. None of
them is a JSON start or an anti-hijacking prefix, and none matches a UTF-8/16/32 BOM (`\xff\xfe`
is refused as an MPEG frame sync for that reason; TrueType's ASCII `true` must be followed by
the NUL high byte of its table count, so the JSON literal `true` does not match).

Sources: the WHATWG MIME Sniffing Standard, §6.1 "Matching an image type pattern", §6.2
"Matching an audio or video type pattern" (incl. "Signature for MP4", "Signature for MP3 without
ID3") and §6.3 "Matching a font type pattern" (https://mimesniff.spec.whatwg.org/); ISO/IEC
14496-12 §4.3 (the `ftyp` box); RFC 8081 (font/*); Apple's TrueType Reference Manual, "The
font directory" (`true` sfnt version); ISO/IEC 13818-7 (AAC ADTS sync).
"""

from __future__ import annotations

from typing import Final

__all__ = ["SIGNATURE_BYTES", "has_media_signature", "is_streamable", "media_type"]

_STREAMABLE_PREFIXES = ("image/", "audio/", "video/", "font/")

#: Signatures that are fixed bytes at offset 0.
_PREFIXES: Final = (
    b"\x89PNG\r\n\x1a\n",  # PNG (WHATWG §6.1; PNG spec §5.2)
    b"\xff\xd8\xff",  # JPEG: SOI then the first byte of the next marker (WHATWG §6.1)
    b"GIF87a",  # GIF (WHATWG §6.1)
    b"GIF89a",
    b"BM",  # BMP (WHATWG §6.1)
    b"\x00\x00\x01\x00",  # ICO: reserved 0, type 1 (WHATWG §6.1)
    b"\x00\x00\x02\x00",  # CUR: reserved 0, type 2 (WHATWG §6.1)
    b"II*\x00",  # TIFF, little-endian (TIFF 6.0 §2)
    b"MM\x00*",  # TIFF, big-endian
    b"\x1a\x45\xdf\xa3",  # WebM / Matroska: the EBML header ID (WHATWG §6.2.2)
    b"OggS\x00",  # Ogg page, stream structure version 0 (WHATWG §6.2; RFC 3533 §6)
    b"fLaC",  # FLAC stream marker (RFC 9639 §6)
    b"ID3",  # MP3 with an ID3v2 tag (WHATWG §6.2)
    b"MThd\x00\x00\x00\x06",  # Standard MIDI file header chunk (WHATWG §6.2)
    b"wOFF",  # WOFF 1.0 (WHATWG §6.3)
    b"wOF2",  # WOFF 2.0 (WHATWG §6.3)
    b"\x00\x01\x00\x00",  # TrueType / OpenType with TrueType outlines (WHATWG §6.3)
    b"true\x00",  # Apple TrueType: sfnt `true`, then numTables' high byte (see docstring)
    b"OTTO",  # OpenType with CFF outlines (WHATWG §6.3)
    b"ttcf",  # TrueType/OpenType collection (WHATWG §6.3)
)

#: `RIFF` / `FORM` containers: the form type at offset 8 (after a 4-byte size).
_RIFF_FORMS: Final = (
    b"WEBPVP",  # WebP: form WEBP, first chunk VP8/VP8L/VP8X (WHATWG §6.1)
    b"WAVE",  # WAV (WHATWG §6.2)
    b"AVI ",  # AVI (WHATWG §6.2)
)
_AIFF_FORM: Final = b"AIFF"  # `FORM....AIFF` (WHATWG §6.2)

#: How many leading bytes `has_media_signature` needs (the longest signature: RIFF WEBPVP).
SIGNATURE_BYTES: Final = 14

_MPEG_SYNC: Final = 0xE0  # the 3 low bits of the 11-bit MPEG audio frame sync
_UTF16_LE_BOM_TAIL: Final = 0xFE  # \xff\xfe: UTF-16LE / UTF-32LE byte order mark


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type header ('' when absent)."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_streamable(content_type: str | None) -> bool:
    """True for media types that may stream unscanned if `has_media_signature` agrees."""
    kind = media_type(content_type)
    return kind.startswith(_STREAMABLE_PREFIXES) and not kind.endswith(("+xml", "/svg"))


def has_media_signature(head: bytes) -> bool:
    """True if `head` starts with the signature of a known binary media format.

    `head` must hold the body's first `SIGNATURE_BYTES` bytes (or the whole body if shorter).
    An empty or unknown head is False: the body is then read and scanned like any other.
    """
    if head.startswith(_PREFIXES):
        return True
    if head.startswith(b"RIFF"):
        return head.startswith(_RIFF_FORMS, 8)
    if head.startswith(b"FORM"):
        return head.startswith(_AIFF_FORM, 8)
    if head[4:8] == b"ftyp":
        # ISO base media file (MP4, MOV, M4A, 3GP, AVIF, HEIC): the first box is `ftyp`, whose
        # 32-bit big-endian size is at least 16 and in practice far below 64 KiB (ISO/IEC
        # 14496-12 §4.3; WHATWG §6.2.1 "Signature for MP4").
        return head.startswith(b"\x00\x00") and int.from_bytes(head[:4]) >= 16  # noqa: PLR2004
    if len(head) >= 2 and head[0] == 0xFF:  # noqa: PLR2004
        # MPEG audio frame (MP3 without ID3; WHATWG §6.2.3) or AAC ADTS: 11 or 12 sync bits. Not
        # \xff\xfe, the UTF-16LE/UTF-32LE BOM (JSON readers such as requests honour it); that
        # only leaves out MPEG-1 Layer I with CRC, which no portal serves.
        second = head[1]
        return second & _MPEG_SYNC == _MPEG_SYNC and second != _UTF16_LE_BOM_TAIL
    return False

"""Token format v1: the grammar of a ciphertext token, and nothing about keys or ciphers.

A token is stored in portal databases for years, so this module is the compatibility promise
written as code (see docs/token-format.md):

    phi1.<mode>.<kid>.<class>.<payload>

    mode     r = AES-256-GCM (random nonce), d = AES-256-SIV (deterministic)
    kid      16 lowercase hex characters (random, opaque)
    class    [a-z][a-z0-9_]{0,31}   the field class, e.g. ssn, insurance_id, history
    payload  base64url without padding; strict and canonical
    AAD      the ASCII bytes of everything before the payload, final "." included

Parsing a single candidate uses plain string operations (this runs once per PHI value on the
proxy's hot path); the regular expressions are for *finding* tokens inside arbitrary text.
Every way a candidate can be malformed raises the same bare `InvalidToken`; `malformed_reason`
gives a log-safe reason code for operators without ever touching the caller-visible error.
"""

from __future__ import annotations

import binascii
import re
from typing import Final, NamedTuple

from keys.errors import InvalidToken

__all__ = [
    "MIN_PAYLOAD",
    "MODE_DETERMINISTIC",
    "MODE_RANDOM",
    "TOKEN_PATTERN",
    "TOKEN_PATTERN_BYTES",
    "TOKEN_PREFIX",
    "TOKEN_PREFIX_BYTES",
    "TOKEN_VERSION",
    "ParsedToken",
    "b64url_decode",
    "b64url_encode",
    "format_header",
    "is_field_class",
    "is_kid",
    "kid_of",
    "malformed_reason",
    "parse_token",
    "parse_token_fast",
]

TOKEN_VERSION: Final = "phi1"  # noqa: S105 - a format marker, not a secret
TOKEN_PREFIX: Final = "phi1."  # noqa: S105 - a format marker, not a secret
TOKEN_PREFIX_BYTES: Final = b"phi1."
MODE_RANDOM: Final = "r"
MODE_DETERMINISTIC: Final = "d"

#: Shortest decoded payload per mode: GCM nonce(12) + tag(16); SIV synthetic IV(16).
MIN_PAYLOAD: Final = {MODE_RANDOM: 28, MODE_DETERMINISTIC: 16}

_KID_LEN: Final = 16
_CLASS_MAX: Final = 32
_HEX: Final = "0123456789abcdef"
_LOWER: Final = "abcdefghijklmnopqrstuvwxyz"
_CLASS_CHARS: Final = _LOWER + "0123456789_"
_B64URL: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# Byte-level twins: the hot path works on bytes because bytes.translate is several times
# faster than str.translate/strip, and the AAD has to be bytes anyway.
_HEX_B: Final = _HEX.encode("ascii")
_CLASS_CHARS_B: Final = _CLASS_CHARS.encode("ascii")
_B64URL_B: Final = _B64URL.encode("ascii")
_B64URL_VALUE_B: Final = {c: i for i, c in enumerate(_B64URL_B)}
_MODES_B: Final = {b"r": MODE_RANDOM, b"d": MODE_DETERMINISTIC}
_URL_TO_STD_B: Final = bytes.maketrans(b"-_+/=", b"+/!!!")  # "!" is never base64
_STD_TO_URL_B: Final = bytes.maketrans(b"+/", b"-_")
_PAD_B: Final = (b"", b"", b"==", b"=")  # indexed by len % 4 (1 is rejected before use)
_UNUSED_BITS_MASK: Final = (0, 0, 0x0F, 0x03)  # bits of the last char that must be zero
_A_B: Final = ord("a")
_Z_B: Final = ord("z")
#: Where the class starts in a well-formed token: len("phi1.r.") + 16 hex + ".".
_CLASS_START: Final = 24
#: Valid headers seen so far (header bytes → mode, kid, class). Bounded; cleared when full.
_HEADERS: dict[bytes, tuple[str, str, str]] = {}
_HEADERS_LIMIT: Final = 4096

# Finding tokens in text. The left boundary refuses [A-Za-z0-9_.-] so "xphi1.…" or "a.phi1.…"
# inside a longer word is not a token; the right boundary refuses the payload alphabet so a
# match never stops in the middle of a longer run. 22 chars is the shortest payload (d mode).
_PATTERN_SOURCE: Final = (
    r"(?<![A-Za-z0-9_.\-])"
    r"phi1\.[rd]\.[0-9a-f]{16}\.[a-z][a-z0-9_]{0,31}\.[A-Za-z0-9_\-]{22,}"
    r"(?![A-Za-z0-9_\-])"
)
TOKEN_PATTERN: Final = re.compile(_PATTERN_SOURCE)
TOKEN_PATTERN_BYTES: Final = re.compile(_PATTERN_SOURCE.encode("ascii"))


class ParsedToken(NamedTuple):
    """The parts of a syntactically valid token; `aad` is exactly what the AEAD authenticates."""

    mode: str
    kid: str
    field_class: str
    aad: bytes
    payload: bytes


def is_kid(kid: str) -> bool:
    """True if `kid` is 16 lowercase hex characters."""
    return len(kid) == _KID_LEN and not kid.strip(_HEX)


def is_field_class(field_class: str) -> bool:
    """True if `field_class` matches [a-z][a-z0-9_]{0,31}."""
    return (
        0 < len(field_class) <= _CLASS_MAX
        and field_class[0] in _LOWER
        and not field_class.strip(_CLASS_CHARS)
    )


def format_header(mode: str, kid: str, field_class: str) -> str:
    """The token text before the payload (also the AAD), final "." included."""
    return f"{TOKEN_PREFIX}{mode}.{kid}.{field_class}."


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (the only encoding a v1 payload is ever written in)."""
    std = binascii.b2a_base64(data, newline=False)
    return std.translate(_STD_TO_URL_B).rstrip(b"=").decode("ascii")


def _b64url_decode_bytes(text: bytes) -> bytes:
    # One translate maps "-_" to "+/" and poisons the standard alphabet's own "+", "/" and "="
    # (they are not base64url); strict decoding then refuses the poison and every other byte
    # outside the alphabet (dots, spaces, newlines), and any misplaced padding.
    rem = len(text) % 4
    if rem == 1 or not text:
        raise InvalidToken
    if rem and _B64URL_VALUE_B.get(text[-1], 0) & _UNUSED_BITS_MASK[rem]:
        raise InvalidToken
    try:
        return binascii.a2b_base64(text.translate(_URL_TO_STD_B) + _PAD_B[rem], strict_mode=True)
    except binascii.Error:
        raise InvalidToken from None


def b64url_decode(text: str) -> bytes:
    """Strict, canonical base64url without padding; raises InvalidToken on anything else.

    Rejects padding, characters outside the URL-safe alphabet, impossible lengths, and
    non-zero unused bits in the last character (which would let two strings decode alike).
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        raise InvalidToken from None
    return _b64url_decode_bytes(raw)


def parse_token(token: str) -> ParsedToken:
    """Split and validate one candidate token; raises bare InvalidToken if malformed."""
    return ParsedToken(*parse_token_fast(token))


def _check_header(aad: bytes) -> tuple[str, str, str]:
    """Validate a header ("phi1.<mode>.<kid>.<class>.") and remember it; raises InvalidToken."""
    parts = aad.split(b".")
    if len(parts) != 5 or parts[0] != b"phi1" or parts[4]:  # noqa: PLR2004 - 4 parts + ""
        raise InvalidToken
    _, mode_b, kid, field_class, _ = parts
    mode = _MODES_B.get(mode_b)
    if (
        mode is None
        or len(kid) != _KID_LEN
        or kid.translate(None, _HEX_B)
        or not 0 < len(field_class) <= _CLASS_MAX
        or not _A_B <= field_class[0] <= _Z_B
        or field_class.translate(None, _CLASS_CHARS_B)
    ):
        raise InvalidToken
    header = (mode, kid.decode("ascii"), field_class.decode("ascii"))
    if len(_HEADERS) >= _HEADERS_LIMIT:
        _HEADERS.clear()
    _HEADERS[aad] = header
    return header


def parse_token_fast(token: str) -> tuple[str, str, str, bytes, bytes]:
    """`parse_token` as a plain tuple (mode, kid, field_class, aad, payload), for hot loops.

    One ASCII encode; the header (which is also the AAD) is found by its fourth dot and
    validated once per distinct header (a bounded memo: a keyring has few (kid, class) pairs);
    then one strict base64 decode. No regular expression, no split of the payload.
    """
    try:
        raw = token.encode("ascii")
    except (UnicodeEncodeError, AttributeError):  # non-ASCII, or not a str at all: fail closed
        raise InvalidToken from None
    cut = raw.find(b".", _CLASS_START) + 1  # the dot after the class; 0 if there is none
    if not cut:
        raise InvalidToken
    aad = raw[:cut]
    header = _HEADERS.get(aad)
    if header is None:
        header = _check_header(aad)
    mode, kid, field_class = header
    payload = _b64url_decode_bytes(raw[cut:])
    if len(payload) < MIN_PAYLOAD[mode]:
        raise InvalidToken
    return mode, kid, field_class, aad, payload


def _split(token: object) -> tuple[str, str, str, str]:
    """Header checks for the slow paths (kid_of, malformed_reason); returns the four parts."""
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX):
        raise InvalidToken
    parts = token.split(".", 5)
    if len(parts) != 5:  # noqa: PLR2004 - version, mode, kid, class, payload
        raise InvalidToken
    _, mode, kid, field_class, payload = parts
    if mode not in MIN_PAYLOAD or not is_kid(kid) or not is_field_class(field_class):
        raise InvalidToken
    return mode, kid, field_class, payload


def kid_of(token: str) -> str:
    """The key id named in a token's header (payload not decoded); raises InvalidToken."""
    return _split(token)[1]


def malformed_reason(token: object) -> str | None:  # noqa: PLR0911 - one exit per reason
    """A log-safe reason code if `token` is malformed, else None. Never includes the token."""
    if not isinstance(token, str):
        return "not-a-token"
    if not token.startswith(TOKEN_PREFIX):
        return "bad-version" if token.startswith("phi") else "not-a-token"
    parts = token.split(".", 5)
    if len(parts) != 5:  # noqa: PLR2004 - version, mode, kid, class, payload
        return "bad-structure"
    _, mode, kid, field_class, payload_text = parts
    checks = (
        (mode in MIN_PAYLOAD, "unknown-mode"),
        (is_kid(kid), "bad-kid"),
        (is_field_class(field_class), "bad-field-class"),
    )
    for ok, reason in checks:
        if not ok:
            return reason
    try:
        payload = b64url_decode(payload_text)
    except InvalidToken:
        return "bad-base64"
    if len(payload) < MIN_PAYLOAD[mode]:
        return "too-short"
    return None

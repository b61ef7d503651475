"""The request guard reads a body as the portal could: any charset, BOM, label or multipart part.

Each case here once reached the portal as plaintext PHI (found in review): the proxy read the
bytes as UTF-8 under the declared media type, while the portal decoded the declared charset,
followed a byte-order mark, parsed JSON whatever the label, or read multipart fields.
"""

import base64

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.transform import RequestRejected, RouteTable, SealContext, encrypt_request
from proxy.transform.settings import WriteRoutesSettings
from proxy.transform.testing import EVERY_GRANT

ROUTES = RouteTable.compile(
    WriteRoutesSettings.model_validate(
        [
            {
                "method": "POST",
                "path": "/api/practices/{practice_id}/patients",
                "practice_from": {"path_param": "practice_id"},
            }
        ]
    )
)
WRITE = ROUTES.match_route("POST", "/api/practices/A/patients")
SSN = "900-77-4321"
RECORD = {"name": "x", "ssn": SSN}
BOUNDARY = "b0undary"


@pytest.fixture
def seal(policy, keyring):
    return SealContext(policy, keyring, access=EVERY_GRANT)


def refused(body: bytes, content_type: str | None, seal, route=None) -> RequestRejected:
    with pytest.raises(RequestRejected) as info:
        encrypt_request(body, content_type, route, seal)
    assert SSN not in info.value.message
    return info.value


def multipart(*parts: tuple[str, str | None, bytes], extra: str = "") -> bytes:
    """A multipart/form-data body: (disposition params, part content type, part body)."""
    out = b""
    for disposition, part_type, body in parts:
        out += f"--{BOUNDARY}\r\nContent-Disposition: form-data; {disposition}\r\n".encode()
        if part_type:
            out += f"Content-Type: {part_type}\r\n".encode()
        out += extra.encode() + b"\r\n" + body + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class TestCharsetsOnAWriteRoute:
    @pytest.mark.parametrize("charset", ["utf-7", "utf-16", "latin-1", "x-unknown"])
    def test_a_charset_other_than_utf8_is_415(self, seal, charset):
        """The portal would decode `+AHM-sn` as `ssn` under utf-7: refuse, never forward."""
        body = b'{"+AHM-sn": "900-77-4321"}'
        error = refused(body, f"application/json; charset={charset}", seal, WRITE)
        assert (error.status, error.reason) == (415, "unsupported_charset")

    @pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "us-ascii", '"utf-8"'])
    def test_utf8_and_ascii_are_encrypted(self, seal, keyring, charset):
        body = orjson.dumps(RECORD)
        out = orjson.loads(
            encrypt_request(body, f"application/json; charset={charset}", WRITE, seal)
        )
        assert keyring.open(out["ssn"]).plaintext == SSN


class TestTheGuardDecodesLikeThePortal:
    @pytest.mark.parametrize(
        ("encoding", "content_type"),
        [
            ("utf-16-le", "application/json; charset=utf-16-le"),
            ("utf-16-be", "application/json; charset=utf-16-be"),
            ("utf-32-le", "application/json; charset=utf-32-le"),
            ("utf-7", "application/json; charset=utf-7"),
            ("latin-1", "application/json; charset=iso-8859-1"),
            ("utf-16-le", "application/json"),  # no label: the NUL pattern says UTF-16
            ("utf-32-be", None),
            ("utf-8-sig", "text/plain; charset=utf-8-sig"),
            ("utf-8-sig", "text/plain"),
            ("utf-16", "application/octet-stream"),  # BOM, then JSON
        ],
    )
    def test_plaintext_phi_in_any_encoding_is_422(self, seal, encoding, content_type):
        body = orjson.dumps(RECORD).decode().encode(encoding)
        error = refused(body, content_type, seal)
        assert (error.status, error.reason) == (422, "plaintext_outside_write_route")

    @pytest.mark.parametrize(
        "content_type",
        ["application/x-www-form-urlencoded", "text/plain", "application/octet-stream", None],
    )
    def test_json_is_checked_whatever_the_label(self, seal, content_type):
        error = refused(orjson.dumps(RECORD), content_type, seal)
        assert error.reason == "plaintext_outside_write_route"

    def test_an_unknown_charset_is_415_and_bad_bytes_400(self, seal):
        error = refused(b'{"a": 1}', "application/json; charset=x-mystery", seal)
        assert (error.status, error.reason) == (415, "unsupported_charset")
        odd_length = '{"a": 1}'.encode("utf-16-le") + b"\x00"
        error = refused(odd_length, "text/plain; charset=utf-16-le", seal)
        assert (error.status, error.reason) == (400, "undecodable_body")

    def test_binary_uploads_and_tokens_pass(self, seal, keyring):
        """Bytes that are not text pass as before; so do well-formed tokens in any encoding."""
        blob = b"\x00\x01\x02\xff" * 64
        assert encrypt_request(blob, "application/octet-stream", None, seal) is blob
        token = keyring.encrypt("A", "ssn", SSN)
        body = orjson.dumps({"ssn": token}).decode().encode("utf-16")
        assert encrypt_request(body, "application/json; charset=utf-16", None, seal) is body

    @pytest.mark.parametrize("value", ["phi1. 900-77-4321", "phi1.r.x.ssn.not-a-token 900"])
    def test_prefixed_plaintext_is_not_a_token(self, seal, value):
        """Only a whole, well-formed token passes a route that does not encrypt."""
        error = refused(orjson.dumps({"ssn": value}), "application/json", seal)
        assert error.reason == "plaintext_outside_write_route"
        error = refused(f"ssn={value}".encode(), "application/x-www-form-urlencoded", seal)
        assert error.reason == "plaintext_outside_write_route"


class TestMultipartOnOtherRoutes:
    def test_a_plaintext_field_is_422(self, seal):
        body = multipart(('name="patient[ssn]"', None, SSN.encode()))
        assert refused(body, MULTIPART, seal).reason == "plaintext_outside_write_route"

    @pytest.mark.parametrize("part_type", ["application/json", "text/plain", None])
    def test_a_json_part_naming_phi_is_422(self, seal, part_type):
        body = multipart(('name="payload"', part_type, orjson.dumps(RECORD)))
        assert refused(body, MULTIPART, seal).reason == "plaintext_outside_write_route"

    def test_a_base64_part_is_decoded_first(self, seal):
        encoded = base64.b64encode(orjson.dumps(RECORD))
        body = multipart(
            ('name="payload"', "application/json", encoded),
            extra="Content-Transfer-Encoding: base64\r\n",
        )
        assert refused(body, MULTIPART, seal).reason == "plaintext_outside_write_route"

    def test_files_and_tokens_pass(self, seal, keyring):
        token = keyring.encrypt("A", "ssn", SSN)
        body = multipart(
            ('name="ssn"', None, token.encode()),
            ('name="scan"; filename="x.png"', "image/png", b"\x89PNG\r\n\x1a\n\x00\x00ssn"),
            ('name="note"', None, b"seen today"),
        )
        assert encrypt_request(body, MULTIPART, None, seal) is body

    @pytest.mark.parametrize(
        "content_type", ["multipart/form-data", "multipart/form-data; boundary=other"]
    )
    def test_a_body_that_does_not_split_is_400(self, seal, content_type):
        body = multipart(('name="note"', None, b"x"))
        error = refused(body, content_type, seal)
        assert (error.status, error.reason) == (400, "unreadable_multipart")


ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-7"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    value=st.text(min_size=1, max_size=30).filter(lambda v: not v.startswith("phi1.")),
    encoding=st.sampled_from(ENCODINGS),
    labelled=st.booleans(),
    key=st.sampled_from(["ssn", "SSN", "member_id", "history", "Social-Security-Number"]),
)
def test_no_encoding_gets_plaintext_past_the_guard(seal, value, encoding, labelled, key):
    """Whatever the encoding, labelled or detectable, a selected plaintext value is refused."""
    body = orjson.dumps({"other": 1, key: value}).decode().encode(encoding)
    needs_label = encoding == "utf-7"  # the only one not detectable from the bytes
    content_type = f"application/json; charset={encoding}" if labelled or needs_label else None
    with pytest.raises(RequestRejected) as info:
        encrypt_request(body, content_type, None, seal)
    assert info.value.status in {400, 415, 422}


UTF7_SSN_JSON = b'{"+AHM-sn": "900-77-4321"}'  # `ssn` to a portal that decodes utf-7
UTF7_SSN_FORM = b"+AHM-sn=900-77-4321"
# Each label below reads as utf-8 (or as no charset) to a `;`-splitting parser and as utf-7 to
# aiohttp's email-based `parse_content_type`, or the other way round: the guard must not guess.
AMBIGUOUS_CHARSET = [
    'x="a; charset=utf-8"; charset=utf-7',
    "charset*=utf-8''utf-7",
    "charset*0=utf; charset*1=-7",
    "charset=utf-8; charset=utf-7",
    'x="a\\"; charset=utf-7"',
]


class TestAmbiguousContentTypes:
    """Found in differential review: the guard and aiohttp's server parsers read these apart."""

    @pytest.mark.parametrize("params", AMBIGUOUS_CHARSET)
    @pytest.mark.parametrize("media", ["application/json", "text/plain"])
    def test_an_ambiguous_charset_is_415_on_other_routes(self, seal, media, params):
        error = refused(UTF7_SSN_JSON, f"{media}; {params}", seal)
        assert (error.status, error.reason) == (415, "ambiguous_content_type")
        assert "Content-Type" in error.message

    @pytest.mark.parametrize("params", AMBIGUOUS_CHARSET)
    def test_an_ambiguous_form_charset_is_415(self, seal, params):
        content_type = f"application/x-www-form-urlencoded; {params}"
        error = refused(UTF7_SSN_FORM, content_type, seal)
        assert (error.status, error.reason) == (415, "ambiguous_content_type")

    @pytest.mark.parametrize("params", AMBIGUOUS_CHARSET)
    def test_an_ambiguous_charset_is_415_on_a_write_route(self, seal, params):
        """Not forwarded as plaintext `+AHM-sn`, which a utf-7 portal would store as `ssn`."""
        body = b'{"name": "Pat", "+AHM-sn": "900-77-4321"}'
        error = refused(body, f"application/json; {params}", seal, WRITE)
        assert (error.status, error.reason) == (415, "ambiguous_content_type")

    @pytest.mark.parametrize("content_type", [";", "json", "application/json,text/plain"])
    def test_a_media_type_the_parsers_read_apart_is_415(self, seal, content_type):
        error = refused(orjson.dumps({"note": 1}), content_type, seal)
        assert (error.status, error.reason) == (415, "ambiguous_content_type")

    @pytest.mark.parametrize(
        "content_type",
        [
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            'application/json; charset="utf-8"',
            "application/vnd.api+json; charset=utf-8",
            "Application/JSON",
        ],
    )
    def test_plain_labels_still_work(self, seal, keyring, content_type):
        out = orjson.loads(encrypt_request(orjson.dumps(RECORD), content_type, WRITE, seal))
        assert keyring.open(out["ssn"]).plaintext == SSN
        assert refused(orjson.dumps(RECORD), content_type, seal).status == 422
        assert encrypt_request(b'{"note": 1}', content_type, None, seal) == b'{"note": 1}'


class TestFormsInAnotherCharset:
    @pytest.mark.parametrize(
        ("body", "charset"),
        [
            (b"%2BAHM-sn=900-77-4321", "utf-7"),  # the portal unquotes, then decodes: `ssn`
            ("%73%00%73%00%6E%00=900-77-4321".encode("utf-16-le"), "utf-16-le"),
            (b"note=seen", "latin-1"),  # refused whatever it holds: we cannot read it the same
        ],
    )
    @pytest.mark.parametrize("route", [None, WRITE])
    def test_a_form_not_in_utf8_is_415(self, seal, body, charset, route):
        content_type = f"application/x-www-form-urlencoded; charset={charset}"
        error = refused(body, content_type, seal, route)
        assert (error.status, error.reason) == (415, "unsupported_charset")

    @pytest.mark.parametrize("charset", ["utf-8", "UTF-8", "us-ascii"])
    def test_utf8_forms_are_checked_as_before(self, seal, charset):
        content_type = f"application/x-www-form-urlencoded; charset={charset}"
        assert refused(f"ssn={SSN}".encode(), content_type, seal).status == 422
        assert encrypt_request(b"note=seen", content_type, None, seal) == b"note=seen"

    def test_a_form_part_in_utf7_is_415(self, seal):
        body = multipart(('name="doc"', "application/x-www-form-urlencoded; charset=utf-7", b"x"))
        error = refused(body, MULTIPART, seal)
        assert (error.status, error.reason) == (415, "unsupported_charset")


def _raw_multipart(boundary: bytes, *parts: bytes) -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return body + b"--" + boundary + b"--\r\n"


SSN_PART = b'Content-Disposition: form-data; name="ssn"\r\n\r\n900-77-4321'


class TestMultipartBoundaries:
    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            # the `;`-splitting parser reads boundary `a`, the email parser `a;b`
            (
                'multipart/form-data; boundary="a;b"',
                b'--a;b\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
                b"--a\r\n" + SSN_PART + b"\r\n--a--\r\n\r\n--a;b--\r\n",
            ),
            # RFC 2231 boundary first: X to one parser, Y to the other
            (
                "multipart/form-data; boundary*=utf-8''X; boundary=Y",
                b'--X\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
                b"--Y\r\n" + SSN_PART + b"\r\n--Y--\r\n\r\n--X--\r\n",
            ),
            # a comment: `X (c)` to one parser, `X` to the other
            (
                "multipart/form-data; boundary=X (c)",
                b'--X\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
                b"--X (c)\r\n" + SSN_PART + b"\r\n--X (c)--\r\n\r\n--X--\r\n",
            ),
            ('multipart/form-data; boundary="bnd "', _raw_multipart(b"bnd ", SSN_PART)),
            ("multipart/form-data; boundary=bnd; boundary=other", _raw_multipart(b"bnd", SSN_PART)),
        ],
    )
    def test_an_ambiguous_boundary_is_415(self, seal, content_type, body):
        error = refused(body, content_type, seal)
        assert (error.status, error.reason) == (415, "ambiguous_content_type")

    def test_a_part_with_defects_is_400(self, seal):
        body = _raw_multipart(b"bnd", b"X-Junk\r\n" + SSN_PART)
        error = refused(body, "multipart/form-data; boundary=bnd", seal)
        assert (error.status, error.reason) == (400, "unreadable_multipart")

    @pytest.mark.parametrize("boundary", ["abc", '"abc def"', "----WebKitFormBoundary7MA4YWxk"])
    def test_plain_and_quoted_boundaries_still_work(self, seal, boundary):
        raw = boundary.strip('"').encode()
        content_type = f"multipart/form-data; boundary={boundary}"
        clean = _raw_multipart(raw, b'Content-Disposition: form-data; name="note"\r\n\r\nhi')
        assert encrypt_request(clean, content_type, None, seal) is clean
        error = refused(_raw_multipart(raw, SSN_PART), content_type, seal)
        assert (error.status, error.reason) == (422, "plaintext_outside_write_route")


class TestMultipartFieldNames:
    @pytest.mark.parametrize(
        "disposition",
        [
            "name=\"note\"; name*=utf-8''ssn",  # the email parser reads note, aiohttp ssn
            "name*=utf-8''note; name=\"ssn\"",
            "name*=utf-8''ssn",
            'name*0="ss"; name*1="n"',
            'name="note"; name="ssn"',
            "name=\"note\"; filename*=utf-8''x.txt",
        ],
    )
    def test_an_ambiguous_name_is_400(self, seal, disposition):
        error = refused(multipart((disposition, None, SSN.encode())), MULTIPART, seal)
        assert (error.status, error.reason) == (400, "unreadable_multipart")

    def test_a_plain_name_and_filename_still_pass(self, seal):
        body = multipart(
            ('name="note"', None, SSN.encode()),
            ('name="scan"; filename="a;b.png"', "image/png", b"\x89PNG"),
        )
        assert encrypt_request(body, MULTIPART, None, seal) is body

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
    return SealContext(policy, keyring)


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

"""JSON served under a non-JSON Content-Type is still walked for selected keys (F2)."""

import json

import orjson
import pytest
from transform_helpers import Grants

from proxy.transform import UnsafeBody, transform_response
from proxy.transform.mediatype import classify

LEGACY = {
    "id": 1,
    "practice_id": "A",
    "ssn": "900-11-2222",
    "insurance": {"member_id": "DEMO-A001-07919"},
    "history": "HIV positive",
}
MASKED = {
    "id": 1,
    "practice_id": "A",
    "ssn": "***-**-2222",
    "insurance": {"member_id": "[hidden]"},
    "history": None,
}
PLAINTEXT = (b"900-11-2222", b"DEMO-A001", b"HIV positive")
NOT_JSON_TYPES = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/octet-stream",
    "application/x-ndjson",
    "application/json-seq",
    "application/json charset=utf-8",
    "application/json, application/json",
    "text/html",
    None,
]


def assert_no_plaintext(out: bytes) -> None:
    for value in PLAINTEXT:
        assert value not in out


class TestWholeDocument:
    @pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
    def test_legacy_plaintext_is_masked(self, make_ctx, content_type):
        """A JSON client parses it whatever the header says, so it is walked as JSON."""
        ctx = make_ctx()
        out = transform_response(orjson.dumps(LEGACY), content_type, ctx)
        assert out == orjson.dumps(MASKED)
        assert ctx.stats.masked == {"ssn": 1, "insurance_id": 1, "history": 1}

    @pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
    def test_granted_caller_gets_the_same_bytes(self, make_ctx, content_type):
        """Nothing to mask for a caller with access: the portal's bytes, untouched."""
        body = b'\xef\xbb\xbf \n{"practice_id": "A", "ssn": "900-11-2222"}\n'
        ctx = make_ctx(Grants.all_classes("A"))
        assert transform_response(body, content_type, ctx) is body
        assert ctx.stats.plaintext_kept == {"ssn": 1}

    def test_bom_and_whitespace_before_the_document(self, make_ctx):
        """A UTF-8 BOM and leading whitespace do not hide the document."""
        body = b"\xef\xbb\xbf\r\n  " + orjson.dumps([LEGACY])
        out = transform_response(body, "text/plain", make_ctx())
        assert orjson.loads(out) == [MASKED]

    def test_x_json_is_a_json_type(self):
        """`application/x-json` is classified as JSON, like `+json` suffixes."""
        assert classify("application/x-json").json
        assert classify("application/vnd.portal+json").json
        assert not classify("application/x-ndjson").json

    def test_tokens_are_still_decided(self, make_ctx, keyring):
        """Tokens in a sniffed document are decided exactly as in a JSON body."""
        doc = {"practice_id": "A", "ssn": keyring.encrypt("A", "ssn", "123-45-6789")}
        out = transform_response(orjson.dumps(doc), "text/plain", make_ctx())
        assert orjson.loads(out) == {"practice_id": "A", "ssn": "***-**-6789"}

    def test_latin1_body_is_read_as_latin1_and_answered_in_ascii(self, make_ctx):
        """The charset the client decodes with is the one we parse; output stays valid in it."""
        body = '{"name": "José", "practice_id": "A", "ssn": "900-11-2222"}'.encode("latin-1")
        out = transform_response(body, "text/plain; charset=iso-8859-1", make_ctx())
        assert out.isascii()
        assert json.loads(out.decode("latin-1")) == {
            "name": "José",
            "practice_id": "A",
            "ssn": "***-**-2222",
        }

    def test_invalid_utf8_is_read_as_a_lenient_client_would(self, make_ctx):
        """A stray invalid byte does not turn the walk back into a token scan."""
        body = b'{"practice_id": "A", "note": "\xff", "ssn": "900-11-2222"}'
        out = transform_response(body, "text/plain", make_ctx())
        assert b"900-11-2222" not in out
        assert orjson.loads(out)["ssn"] == "***-**-2222"

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'{"ssn": "900-11-2222", "ssn": "x"}', "duplicate_key"),
            (b'{"ssn": ' * 70 + b'"1"' + b"}" * 70, "too_deep"),
        ],
    )
    def test_json_the_safe_parser_refuses_is_refused(self, make_ctx, body, reason):
        """A token scan would show the first `ssn` to a client that keeps the first key."""
        with pytest.raises(UnsafeBody, match=reason):
            transform_response(body, "text/plain", make_ctx())

    def test_json_looking_text_without_selected_keys_is_scanned(self, make_ctx, keyring, policy):
        """No selected key: the token scan, as before (the body keeps its spacing)."""
        body = b""
        while not body or policy.may_hold_selected_keys(body):  # a payload may spell "ssn"
            body = f'{{"n":  "{keyring.encrypt("A", "insurance_id", "x")}"}}'.encode()
        assert transform_response(body, "text/plain", make_ctx()) == b'{"n":  "[hidden]"}'


class TestLineByLine:
    def test_ndjson_lines_are_walked_and_line_endings_kept(self, make_ctx):
        """Each line is one document; CRLF, LF and blank lines survive as they were."""
        line = orjson.dumps(LEGACY)
        body = line + b"\r\n\r\n" + line + b"\n" + line
        out = transform_response(body, "application/x-ndjson", make_ctx())
        masked = orjson.dumps(MASKED)
        assert out == masked + b"\r\n\r\n" + masked + b"\n" + masked

    def test_ndjson_line_that_is_not_json_is_token_scanned(self, make_ctx, keyring):
        """NDJSON types: a broken line stays text (tokens masked), the others are walked."""
        token = keyring.encrypt("A", "history", "x")
        body = orjson.dumps(LEGACY) + b"\n" + f"# broken {token}".encode() + b"\n"
        out = transform_response(body, "application/x-ndjson", make_ctx())
        assert out == orjson.dumps(MASKED) + b"\n# broken [redacted]\n"

    def test_json_seq_records(self, make_ctx):
        """RFC 7464 records (RS before each text) are walked and the RS kept."""
        body = b"\x1e" + orjson.dumps(LEGACY) + b"\n\x1e" + orjson.dumps(LEGACY) + b"\n"
        out = transform_response(body, "application/json-seq", make_ctx())
        masked = orjson.dumps(MASKED)
        assert out == b"\x1e" + masked + b"\n\x1e" + masked + b"\n"

    @pytest.mark.parametrize("content_type", ["text/plain", None, "application/octet-stream"])
    def test_any_type_whose_every_line_is_json(self, make_ctx, content_type):
        """Not an NDJSON type, but every non-empty line parses: walked line by line."""
        body = orjson.dumps(LEGACY) + b"\n" + orjson.dumps([LEGACY]) + b"\n"
        out = transform_response(body, content_type, make_ctx())
        assert out == orjson.dumps(MASKED) + b"\n" + orjson.dumps([MASKED]) + b"\n"
        assert_no_plaintext(out)

    def test_other_type_with_a_non_json_line_falls_back_to_the_token_scan(self, make_ctx, keyring):
        """Not JSON to any client: the token scan, exactly as before."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        body = f'[ssn] lookup\n{{"ssn": "{token}"}}\n'.encode()
        out = transform_response(body, "text/plain", make_ctx())
        assert out == b'[ssn] lookup\n{"ssn": "***-**-6789"}\n'

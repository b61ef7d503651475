"""JSON served under a non-JSON Content-Type is still walked for selected keys (F2)."""

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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

    def test_other_type_with_a_non_json_line_is_refused(self, make_ctx, keyring):
        """Formerly token-scanned: a lenient client reads the second line's legacy plaintext."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        body = f'[ssn] lookup\n{{"ssn": "{token}"}}\n'.encode()
        with pytest.raises(UnsafeBody, match="invalid_json"):
            transform_response(body, "text/plain", make_ctx())


REC = b'{"id":1,"practice_id":"A","ssn":"900-11-2222"}'
REC_MASKED = b'{"id":1,"practice_id":"A","ssn":"***-**-2222"}'


class TestNotJsonThroughout:
    """Bodies the sniffing cannot split into JSON texts: 502, never the token scan alone."""

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/x-ndjson", b"# ssn export\n" + REC + b"\n"),
            ("application/x-ndjson", b'{"a":1} ' + REC + b"\n"),
            ("application/x-ndjson", REC + b" x\n"),
            ("application/x-ndjson", b'{"a":1}\x0b' + REC),
            ("application/json-seq", b'\x1e{"a":1}\n\x1e' + REC + b'\x1e{"b":2}\n'),
            ("application/json-seq", b'\x1e{"a":1}\x1e' + REC + b"\n"),
            ("text/plain", b'{"a":1} ' + REC),
            ("text/plain", REC + b" trailing"),
            ("text/plain", b")]}',\n" + REC),
            ("text/plain", b"# export\n" + REC + b"\n"),
            ("text/plain", b"\x0c" + REC),
            ("text/plain", b'{"a":1}\xe2\x80\xa8' + REC),
            ("text/plain; charset=iso-8859-1", b"\xa0" + REC),
            ("text/plain; charset=iso-8859-1", b'{"a":1}\x85' + REC),
            ("application/octet-stream", REC + b"xyz"),
            ("text/plain", b"cb(" + REC + b")"),  # JSONP under a non-script type
            (None, b"x " + REC),
        ],
    )
    def test_refused(self, make_ctx, content_type, body):
        with pytest.raises(UnsafeBody) as caught:
            transform_response(body, content_type, make_ctx())
        assert caught.value.reason == "invalid_json"

    @pytest.mark.parametrize(
        ("content_type", "body", "expected"),
        [
            ("application/x-ndjson", b"1\n" + REC + b"\n", b"1\n" + REC_MASKED + b"\n"),
            ("application/x-ndjson", b'"hdr"\n' + REC, b'"hdr"\n' + REC_MASKED),
            ("application/x-ndjson", b"# export\n" + REC, b"# export\n" + REC_MASKED),
            ("application/x-ndjson", b")]}',\n" + REC, b")]}',\n" + REC_MASKED),
            ("text/plain", b"1\n" + REC + b"\n", b"1\n" + REC_MASKED + b"\n"),
            (None, b' "x"\n' + REC, b' "x"\n' + REC_MASKED),
        ],
    )
    def test_first_line_need_not_look_like_json(self, make_ctx, content_type, body, expected):
        """F1: every line is walked whatever the first one is (NDJSON: text lines allowed)."""
        assert transform_response(body, content_type, make_ctx()) == expected

    def test_no_braces_is_still_token_scanned(self, make_ctx, keyring):
        """Without `{`/`[` no key can label plaintext: plain text keeps the token scan."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        body = f"ssn on file: {token}".encode()
        assert transform_response(body, "text/plain", make_ctx()) == b"ssn on file: ***-**-6789"

    def test_tokens_alone_do_not_refuse(self, make_ctx, keyring):
        """A token names its class in clear; with no key name outside tokens: token scan."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        body = f"lookup {{{token}}} done".encode()
        assert transform_response(body, "text/plain", make_ctx()) == b"lookup {***-**-6789} done"

    @pytest.mark.parametrize("content_type", ["text/html", "text/csv", "application/xml"])
    def test_markup_keeps_the_token_scan(self, make_ctx, keyring, content_type):
        """Pages and tables hold braces and field names: token scan, as before."""
        token = keyring.encrypt("A", "ssn", "123-45-6789")
        body = f'<p>ssn</p><script>var a = {{"x": 1}};</script>{token}'.encode()
        out = transform_response(body, content_type, make_ctx())
        assert out.endswith(b"***-**-6789")
        assert b"phi1." not in out

    def test_bodies_without_selected_keys_take_the_fast_path(self, make_ctx):
        body = b'garbage {"a": 1} ['
        assert transform_response(body, "text/plain", make_ctx()) is body


class TestWideJson:
    """F3: UTF-16/32 JSON without a BOM is read by JSON clients from its NUL pattern."""

    @pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
    @pytest.mark.parametrize(
        "content_type",
        ["application/json", "text/plain", "application/octet-stream", "text/html", None],
    )
    def test_refused(self, make_ctx, codec, content_type):
        body = REC.decode().encode(codec)
        assert make_ctx().policy.may_need_transform(body, content_type)
        with pytest.raises(UnsafeBody) as caught:
            transform_response(body, content_type, make_ctx())
        assert caught.value.reason == "unsupported_charset"
        assert json.loads(body)["ssn"] == "900-11-2222"  # what a client would have read


class TestThePortalsFrontEnd:
    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/javascript", b"function validateSsn(f) { return /\\d{3}/.test(f.ssn); }"),
            ("text/javascript; charset=utf-8", b'const fields = ["ssn", "member_id"]; if (x) {}'),
            ("text/css", b".ssn-field { width: 9em; } .history { color: red; }"),
        ],
    )
    def test_scripts_and_style_sheets_naming_fields_still_load(self, make_ctx, content_type, body):
        """Braces and field names are normal in code: token-scanned, not refused as bad JSON."""
        assert transform_response(body, content_type, make_ctx()) is body

    def test_a_whole_json_document_served_as_javascript_is_still_walked(self, make_ctx):
        out = transform_response(orjson.dumps(LEGACY), "application/javascript", make_ctx())
        assert out == orjson.dumps(MASKED)


def test_a_binary_download_starting_with_nuls_is_not_refused(make_ctx):
    """Only NUL-padded text that decodes to JSON counts as UTF-16/32; other bytes pass."""
    blob = b"\x00\x00\x01\x02" + bytes(range(256))
    assert transform_response(blob, "application/octet-stream", make_ctx()) is blob


def test_a_plain_text_error_naming_a_field_is_not_withheld(make_ctx):
    """No JSON object or array in it: token-scanned as before, not refused as broken JSON."""
    body = b"Error [code 5]: the ssn field is invalid"
    assert transform_response(body, "text/plain", make_ctx()) is body


class TestStrayBytes:
    """One NUL or one byte invalid in the charset must not switch the walk off."""

    ROW = orjson.dumps(LEGACY)

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("application/x-ndjson", ROW + b"\n\x00\n" + ROW + b"\n"),
            ("text/plain; charset=utf-8", b"M\xfcller export\n" + ROW),
            ("text/plain; charset=windows-1252", b"export \x81\n" + ROW),
            ("application/octet-stream", ROW + b"\x00"),
            (None, ROW + b"\x00"),
            ("text/plain", b"\x00" + ROW),
        ],
    )
    def test_legacy_plaintext_never_passes(self, make_ctx, content_type, body):
        """Walked (masked) or withheld (502) — as the same body without the stray byte is."""
        try:
            out = transform_response(body, content_type, make_ctx())
        except UnsafeBody as exc:
            reason = exc.reason
        else:
            assert_no_plaintext(out)
            return
        assert reason in {"invalid_json", "unsupported_charset"}

    def test_ndjson_nul_line_is_kept_and_rows_masked(self, make_ctx):
        """An NDJSON NUL line is token-scanned text; the rows around it are walked."""
        out = transform_response(self.ROW + b"\n\x00\n", "application/x-ndjson", make_ctx())
        assert out == orjson.dumps(MASKED) + b"\n\x00\n"

    def test_binary_download_is_still_token_scanned(self, make_ctx):
        """Octet-stream that does not start like JSON and holds NULs stays a download."""
        body = b'%PDF-1.7\x00\x81 {"ssn" stream'
        assert transform_response(body, "application/octet-stream", make_ctx()) is body


class TestBinaryLookingJson:
    """Bodies binary by their bytes that still carry JSON members."""

    ROW = orjson.dumps(LEGACY)
    XSSI = b")]}',\n"  # Angular strips it and parses the rest, whatever the type
    LATIN1 = ROW[:-1] + b',"note":"M\xfcller"}'
    MULTIPART = (
        b"--b\r\nContent-Type: application/json\r\n\r\n" + ROW + b"\r\n"
        b"--b\r\nContent-Type: application/pdf\r\n\r\n%PDF-1.7\x00\x01\x02\r\n--b--\r\n"
    )

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            (None, XSSI + LATIN1),
            ("application/octet-stream", XSSI + LATIN1),
            ("application/octet-stream; charset=utf-8", XSSI + LATIN1),
            ("multipart/mixed; boundary=b", MULTIPART),
            ("application/x-www-form-urlencoded", b"x\x00\n" + ROW),
        ],
    )
    def test_selected_members_in_a_binary_body_are_withheld(self, make_ctx, content_type, body):
        with pytest.raises(UnsafeBody, match=r"invalid_json|multipart_with_phi"):
            transform_response(body, content_type, make_ctx())

    def test_a_token_followed_by_plaintext_is_plaintext(self, make_ctx, keyring):
        """Only a value that is exactly one token is left to the token scan."""
        token = keyring.encrypt("A", "ssn", "1")
        body = self.XSSI + b'{"ssn": "' + token.encode() + b' 900-55-4803", "n": "M\xfcller"}'
        with pytest.raises(UnsafeBody, match="invalid_json"):
            transform_response(body, "application/octet-stream", make_ctx())

    def test_a_path_selected_name_counts_in_a_binary_body(self, make_ctx):
        """The FHIR path's `value` inside a binary-looking body → withheld."""
        system = "http://hl7.org/fhir/sid/us-ssn"
        doc = {"identifier": [{"system": system, "value": "900-11-2222"}], "n": "x"}
        body = self.XSSI + orjson.dumps(doc)[:-2] + b'M\xfcller"}'
        with pytest.raises(UnsafeBody, match="invalid_json"):
            transform_response(body, "application/octet-stream", make_ctx())

    def test_an_escaped_member_name_is_still_a_selected_one(self, make_ctx):
        body = b"%PDF-1.7\x00" + b'{"\\u0073sn": "900-11-2222"}'
        with pytest.raises(UnsafeBody, match="invalid_json"):
            transform_response(body, "application/octet-stream", make_ctx())

    @pytest.mark.parametrize(
        "member", [b'"className":', b'"\xc5\xbf":', b'"businessName":', b'"s":']
    )
    def test_members_no_key_selector_names_do_not_refuse_a_download(self, make_ctx, member):
        """Only exact selected names count, not the byte prefilter's hits.

        (Names a path selector needs, such as the FHIR path's `value`, do count in a binary
        body, where the structure around them cannot be seen: review 8, F2.)
        """
        body = b"PK\x03\x04\x00\x00" + b"{" + member + b' "x", "ssn history"}\x00'
        assert transform_response(body, "application/zip", make_ctx()) == body

    @given(
        noise=st.binary(min_size=64, max_size=4096).map(lambda b: b.replace(b'"', b"")),
        at=st.integers(min_value=0, max_value=4096),
    )
    @settings(
        max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    def test_a_download_naming_a_field_outside_member_syntax_still_streams(
        self, make_ctx, noise, at
    ):
        """Braces and field names without `"name":` in binary bytes are no reason to refuse.

        (The noise holds no quote, so no member can form by chance: the property is exact.)
        """
        body = b"%PDF-1.7\x00" + noise[:at] + b'{"x ssn history' + noise[at:]
        assert transform_response(body, "application/octet-stream", make_ctx()) == body


class TestMultipartParts:
    """Parts hidden from a byte search are decoded as a MIME parser would."""

    ROW = orjson.dumps(LEGACY)

    @pytest.mark.parametrize(
        ("headers", "payload"),
        [
            (b"Content-Transfer-Encoding: base64\r\n", __import__("base64").b64encode(ROW)),
            (
                b"Content-Transfer-Encoding: quoted-printable\r\n",
                __import__("quopri").encodestring(ROW.replace(b"ssn", b"=73sn")),
            ),
            (b"", ROW.decode().encode("utf-16-le")),
        ],
        ids=["base64", "quoted-printable", "utf-16"],
    )
    def test_a_json_part_with_legacy_plaintext_is_withheld(self, make_ctx, headers, payload):
        body = (
            b"--b\r\nContent-Type: application/json\r\n"
            + headers
            + b"\r\n"
            + payload
            + b"\r\n--b--\r\n"
        )
        with pytest.raises(UnsafeBody, match=r"multipart_with_phi|unsupported_charset"):
            transform_response(body, "multipart/mixed; boundary=b", make_ctx())

    def test_a_part_holding_tokens_is_withheld_not_rewritten(self, make_ctx, keyring):
        """Multipart bodies are not rewritten: a part a caller would see changed → 502."""
        token = keyring.encrypt("A", "ssn", "900-11-2222")
        part = orjson.dumps({"ssn": token})
        body = b"--b\r\nContent-Type: application/json\r\n\r\n" + part + b"\r\n--b--\r\n"
        with pytest.raises(UnsafeBody, match="multipart_with_phi"):
            transform_response(body, "multipart/mixed; boundary=b", make_ctx())

    @pytest.mark.parametrize(
        ("content_type", "body"),
        [
            ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"),
            (
                "multipart/mixed; boundary=b",
                (
                    b"--b\r\nContent-Type: application/json; charset=utf-7\r\n\r\n"
                    b'{"+AHMAcwBu-": "900-11-2222"}\r\n--b--\r\n'
                ),
            ),
            (
                "multipart/mixed; boundary=b",
                (
                    b"--b\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\r\n"
                    b"\x1f\x8b\x08\x00\r\n--b--\r\n"
                ),
            ),
        ],
        ids=["unclosed", "utf-7-part", "gzip-part"],
    )
    def test_parts_that_cannot_be_checked_are_withheld(self, make_ctx, content_type, body):
        """Review 8: an unsplittable body, a utf-7 part or a compressed part → 502."""
        with pytest.raises(UnsafeBody, match="unreadable_multipart"):
            transform_response(body, content_type, make_ctx())

    def test_a_multipart_body_without_phi_passes_unchanged(self, make_ctx):
        body = (
            b"--b\r\nContent-Type: application/json\r\n\r\n"
            + orjson.dumps({"appointment": "2026-12-01"})
            + b"\r\n--b\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\x00\r\n--b--\r\n"
        )
        assert transform_response(body, "multipart/mixed; boundary=b", make_ctx()) is body

    def test_a_path_selected_value_in_a_part_is_withheld(self, make_ctx):
        """The FHIR SSN path selector applies inside parts (the walk runs)."""
        system = "http://hl7.org/fhir/sid/us-ssn"
        part = orjson.dumps({"identifier": [{"system": system, "value": "900-11-2222"}]})
        body = b"--b\r\nContent-Type: application/json\r\n\r\n" + part + b"\r\n--b--\r\n"
        with pytest.raises(UnsafeBody, match="multipart_with_phi"):
            transform_response(body, "multipart/mixed; boundary=b", make_ctx())


@pytest.mark.parametrize(
    "content_type", ["multipart", "Multipart/Mixed; boundary=b", "message/rfc822"]
)
def test_every_container_spelling_reaches_the_part_check(make_ctx, policy, content_type):
    """One classification decides 'container' for the fast path and the transform alike."""
    row = orjson.dumps(LEGACY)
    body = (
        b"--b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + __import__("base64").b64encode(row)
        + b"\r\n--b--\r\n"
    )
    assert policy.may_need_transform(body, content_type)
    with pytest.raises(UnsafeBody):
        transform_response(body, content_type, make_ctx())

import pytest
from transform_helpers import Grants

from proxy.transform import UnsafeBody, transform_response


class TestTextBodies:
    def test_html_inserts_escaped_plaintext(self, make_ctx, keyring):
        """Decrypted values are HTML-escaped, so they cannot inject markup."""
        token = keyring.encrypt("A", "history", "<script>x</script> & co")
        out = transform_response(
            f"<p>{token}</p>".encode(), "text/html", make_ctx(Grants.all_classes("A"))
        )
        assert out == b"<p>&lt;script&gt;x&lt;/script&gt; &amp; co</p>"

    def test_html_masks_for_unauthorized(self, make_ctx, keyring):
        """Without a grant the mask replaces the token; null masks become the redacted text."""
        body = f"<td>{keyring.encrypt('A', 'history', 'flu')}</td>".encode()
        assert transform_response(body, "text/html; charset=utf-8", make_ctx()) == (
            b"<td>[redacted]</td>"
        )

    def test_csv_keeps_quoting_valid(self, make_ctx, keyring):
        """Values with commas/quotes are quoted or doubled so the CSV still parses the same."""
        import csv
        import io

        value = 'Doe, "Jr"\nline'
        t1, t2, t3 = (keyring.encrypt("A", "history", value) for _ in range(3))
        body = f'id,a,b,c\n1,{t1},"x {t2} y",pre {t3}\n'.encode()
        out = transform_response(body, "text/csv", make_ctx(Grants.all_classes("A")))
        rows = list(csv.reader(io.StringIO(out.decode())))
        assert rows[1][0] == "1"
        assert rows[1][1] == value
        assert rows[1][2] == f"x {value} y"
        assert len(rows[1]) == 4
        assert "Doe" in rows[1][3]

    def test_ndjson_gets_json_string_escapes(self, make_ctx, keyring):
        """In NDJSON the inserted value is JSON-escaped, so each line still parses."""
        import json

        token = keyring.encrypt("A", "history", 'say "hi"\n')
        body = (f'{{"n": "{token}"}}\n' * 2).encode()
        out = transform_response(body, "application/x-ndjson", make_ctx(Grants.all_classes("A")))
        lines = out.decode().splitlines()
        assert [json.loads(line)["n"] for line in lines] == ['say "hi"\n'] * 2

    def test_json_with_odd_content_type_is_sniffed(self, make_ctx, keyring):
        """A JSON-looking text/plain body gets JSON-string escaping."""
        import json

        token = keyring.encrypt("A", "history", 'a"b')
        body = f'{{"n": "{token}"}}'.encode()
        out = transform_response(body, "text/plain", make_ctx(Grants.all_classes("A")))
        assert json.loads(out) == {"n": 'a"b'}

    def test_leftover_prefix_is_masked_and_counted(self, make_ctx):
        """Something that has the prefix but is not a token never passes."""
        ctx = make_ctx()
        out = transform_response(b"x phi1.r.zz.y end", "text/plain", ctx)
        assert b"phi1." not in out
        assert out == b"x [redacted] end"
        assert ctx.stats.integrity_failures == 1

    def test_text_without_tokens_is_returned_as_is(self, make_ctx):
        """No token prefix: the same bytes object comes back."""
        body = b"ssn,name\n123-45-6789,x\n"
        assert transform_response(body, "text/csv", make_ctx()) is body

    @pytest.mark.parametrize(
        "content_type", ["text/plain; charset=utf-16", "text/html; charset=utf-7"]
    )
    def test_unsafe_charsets_are_refused(self, make_ctx, content_type):
        """Charsets in which tokens could hide from a byte search are refused."""
        with pytest.raises(UnsafeBody, match="unsupported_charset"):
            transform_response(b"abc", content_type, make_ctx())

    def test_utf16_body_without_charset_is_refused(self, make_ctx, keyring):
        """A UTF-16 body carrying a token is refused, not passed through unseen."""
        token = keyring.encrypt("A", "history", "flu")
        body = f"x {token}".encode("utf-16-le")
        with pytest.raises(UnsafeBody, match="unsupported_charset"):
            transform_response(body, "text/plain", make_ctx())

    def test_latin1_body_gets_values_in_latin1(self, make_ctx, keyring):
        """Inserted values are encoded in the body's declared charset."""
        token = keyring.encrypt("A", "history", "café")
        out = transform_response(
            f"<b>{token}</b>".encode(),
            "text/html; charset=iso-8859-1",
            make_ctx(Grants.all_classes("A")),
        )
        assert out == "<b>café</b>".encode("latin-1")

import json
import logging

from hypothesis import given
from hypothesis import strategies as st

from keys.testing import make_keyring
from proxy.logs import JsonFormatter, scrub

KEYRING = make_keyring(["practice-a"])
TOKEN = KEYRING.encrypt("practice-a", "ssn", "123-45-6789")
JWT = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def _render(msg: str, fields: dict) -> str:
    record = logging.LogRecord("phi_proxy.test", logging.INFO, __file__, 1, msg, (), None)
    record.fields = fields
    return JsonFormatter().format(record)


class TestScrubber:
    def test_tokens_jwts_and_credentials_are_replaced(self):
        """Each secret shape is replaced wherever it appears in a rendered line."""
        line = _render(
            f"saw {TOKEN}",
            {"auth": f"Bearer {JWT}", "nested": {"list": [TOKEN, "basic\tdXNlcjpwYXNz"]}},
        )
        event = json.loads(line)
        assert TOKEN not in line
        assert JWT not in line
        assert "dXNlcjpwYXNz" not in line
        assert event["msg"] == "saw [token]"
        assert event["nested"]["list"][0] == "[token]"

    @given(
        st.dictionaries(
            st.text(max_size=8),
            st.one_of(
                st.text(max_size=20),
                st.integers(),
                st.sampled_from([TOKEN, JWT, f"Bearer {JWT}", f"x {TOKEN} y"]),
            ),
            max_size=6,
        )
    )
    def test_rendered_lines_stay_valid_json_without_secrets(self, fields):
        """Scrubbing the rendered line keeps it valid JSON and leaves no secret shape in it."""
        line = _render("event", fields)
        json.loads(line)
        assert TOKEN not in line
        assert JWT not in line

    def test_lines_without_hints_are_returned_unchanged(self):
        """The fast pre-check passes ordinary text through untouched."""
        text = '{"path": "/api/patients", "status": 200}'
        assert scrub(text) is text


_HINT_PIECES = st.sampled_from(
    [
        "phi",
        "PHI",
        "phi1",
        "eyJ",
        "EYJ",
        "bearer",
        "BeArEr",
        "basic",
        "BASIC",
        "ba\u017fic",  # long s: matches "s" when case is ignored
        "1",
        ".",
        " ",
        "\t",
        "\\t",
        "x",
        "é",
    ]
)


class TestScrubHint:
    @given(st.lists(st.one_of(_HINT_PIECES, st.text(max_size=4)), max_size=12).map("".join))
    def test_fast_hint_never_misses_what_a_scrubber_would_replace(self, text):
        """The pre-check may say "maybe" too often, never "no" for a line a scrubber changes."""
        from proxy.logs import _SCRUBBERS, _may_need_scrub

        if any(pattern.search(text) for pattern, _ in _SCRUBBERS):
            assert _may_need_scrub(text)

    def test_an_ascii_credential_in_any_case_is_scrubbed(self):
        """The ASCII path lower-cases before looking for the scheme names."""
        assert scrub("auth BEARER abc.def") == "auth BEARER [credential]"
        assert scrub("auth BaSiC dXNlcjpwYXNz") == "auth BaSiC [credential]"

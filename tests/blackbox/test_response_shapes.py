"""Response shapes that used to leak legacy plaintext, end to end through a real proxy.

F1: keys of a selected object (`{"medical_history": {"HIV positive": true}}`).
F2: JSON served under a non-JSON Content-Type (clients parse it anyway).
Every assertion is on the exact bytes the caller receives.
"""

from __future__ import annotations

import orjson
import pytest
from blackbox_env import PLANTED

SSN = "900-11-2222"
HISTORY_KEYS = ("HIV positive", "Hepatitis C")
MEMBER = "DEMO-A001-07919"
PLANTED.update((SSN, MEMBER, *HISTORY_KEYS))

PATH = "/api/practices/practice-a/patients/1"
KEYED = {
    "id": 1,
    "practice_id": "practice-a",
    "name": "Ada",
    "medical_history": {"HIV positive": True, "Hepatitis C": "2019"},
    "ssn": {SSN: "primary"},
}
KEYED_MASKED = {
    "id": 1,
    "practice_id": "practice-a",
    "name": "Ada",
    "medical_history": None,
    "ssn": "[redacted]",  # keep-last mask fallback: an object has no last four digits
}
LEGACY = {
    "id": 1,
    "practice_id": "practice-a",
    "ssn": SSN,
    "insurance": {"member_id": MEMBER},
    "medical_history": "HIV positive",
}
LEGACY_MASKED = {
    "id": 1,
    "practice_id": "practice-a",
    "ssn": "***-**-2222",
    "insurance": {"member_id": "[redacted]"},
    "medical_history": None,
}
NOT_JSON_TYPES = [
    "text/plain; charset=utf-8",
    "application/octet-stream",
    "application/x-ndjson",
    "application/x-json",
    "application/json charset=utf-8",
]


def assert_nothing_planted(body: bytes) -> None:
    for value in (SSN, MEMBER, *HISTORY_KEYS):
        assert value.encode() not in body


class TestSelectedObjectKeys:
    async def test_anonymous_caller_gets_the_objects_masked_whole(self, proxy_env):
        """The keys of a selected object are PHI: the caller gets the class's mask instead."""
        proxy_env.portal.script(PATH, orjson.dumps(KEYED))
        response = await proxy_env.get(PATH)
        body = await response.read()
        assert response.status == 200
        assert body == orjson.dumps(KEYED_MASKED)
        assert_nothing_planted(body)

    async def test_revoked_caller_gets_the_objects_masked_whole(self, proxy_env):
        """A grant for another practice does not open practice-a's objects."""
        await proxy_env.grant("bob", "practice-b")
        proxy_env.portal.script(PATH, orjson.dumps(KEYED))
        response = await proxy_env.get(PATH, sub="bob")
        assert await response.read() == orjson.dumps(KEYED_MASKED)

    async def test_granted_caller_gets_the_portal_bytes(self, proxy_env):
        """A caller with a grant for the record's practice still sees keys and values."""
        await proxy_env.grant("alice", "practice-a")
        proxy_env.portal.script(PATH, orjson.dumps(KEYED))
        response = await proxy_env.get(PATH, sub="alice")
        assert await response.read() == orjson.dumps(KEYED)

    async def test_tokens_as_values_do_not_keep_the_keys(self, proxy_env):
        """Values that are tokens used to be masked while their keys stayed."""
        token = proxy_env.encrypt("practice-a", "history", "since 2019")
        doc = {"id": 1, "practice_id": "practice-a", "medical_history": {"HIV positive": token}}
        proxy_env.portal.script(PATH, orjson.dumps(doc))
        body = await (await proxy_env.get(PATH)).read()
        assert body == orjson.dumps({**doc, "medical_history": None})


class TestJsonUnderOtherTypes:
    @pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
    async def test_anonymous_caller_gets_masks(self, proxy_env, content_type):
        """JSON clients parse the body whatever the header says: it is walked as JSON."""
        proxy_env.portal.script(PATH, orjson.dumps(LEGACY), content_type=content_type)
        response = await proxy_env.get(PATH)
        body = await response.read()
        assert response.status == 200
        assert body == orjson.dumps(LEGACY_MASKED)
        assert response.headers["Cache-Control"] == "no-store"

    @pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
    async def test_granted_caller_gets_the_portal_bytes(self, proxy_env, content_type):
        """Nothing to mask for a caller with access: the exact bytes the portal sent."""
        await proxy_env.grant("alice", "practice-a")
        sent = orjson.dumps(LEGACY) + b"\n"
        proxy_env.portal.script(PATH, sent, content_type=content_type)
        response = await proxy_env.get(PATH, sub="alice")
        assert await response.read() == sent

    async def test_ndjson_lines_keep_their_endings(self, proxy_env):
        """Each NDJSON line is walked on its own; CRLF and LF come back as sent."""
        line = orjson.dumps(LEGACY)
        proxy_env.portal.script(
            PATH, line + b"\r\n" + line + b"\n", content_type="application/x-ndjson"
        )
        body = await (await proxy_env.get(PATH)).read()
        masked = orjson.dumps(LEGACY_MASKED)
        assert body == masked + b"\r\n" + masked + b"\n"

    async def test_duplicate_key_json_as_text_is_refused(self, proxy_env):
        """A client keeping the first `ssn` would read plaintext: 502, none of the body."""
        sent = b'{"practice_id": "practice-a", "ssn": "900-11-2222", "ssn": "x"}'
        proxy_env.portal.script(PATH, sent, content_type="text/plain")
        response = await proxy_env.get(PATH)
        body = await response.read()
        assert response.status == 502
        assert_nothing_planted(body)


REC = orjson.dumps(LEGACY)
REC_MASKED = orjson.dumps(LEGACY_MASKED)


class TestNotJsonThroughout:
    """Bodies the sniffing could not split into JSON texts were token-scanned.

    Lenient clients read the legacy plaintext out of them; now walked line by line, or 502.
    """

    @pytest.mark.parametrize(
        ("content_type", "sent", "expected"),
        [
            ("application/x-ndjson", b"1\n" + REC + b"\n", b"1\n" + REC_MASKED + b"\n"),
            ("application/x-ndjson", b'"hdr"\n' + REC + b"\n", b'"hdr"\n' + REC_MASKED + b"\n"),
            (
                "application/x-ndjson",
                b"# export\n" + REC + b"\n",
                b"# export\n" + REC_MASKED + b"\n",
            ),
            ("text/plain", b"1\n" + REC + b"\n", b"1\n" + REC_MASKED + b"\n"),
        ],
    )
    async def test_first_line_that_is_not_an_object_is_no_shield(
        self, proxy_env, content_type, sent, expected
    ):
        proxy_env.portal.script(PATH, sent, content_type=content_type)
        response = await proxy_env.get(PATH)
        assert response.status == 200
        assert await response.read() == expected

    @pytest.mark.parametrize(
        ("content_type", "sent"),
        [
            ("application/x-ndjson", b'{"a":1} ' + REC + b"\n"),
            ("application/x-ndjson", REC + b" x\n"),
            ("application/x-ndjson", b'{"a":1}\x0b' + REC),
            ("application/json-seq", b'\x1e{"a":1}\x1e' + REC + b"\n"),
            ("application/json-seq", b'\x1e{"a":1}\n\x1e' + REC + b'\x1e{"b":2}\n'),
            ("text/plain", b'{"a":1} ' + REC),
            ("text/plain", REC + b" trailing"),
            ("text/plain", b")]}',\n" + REC),
            ("text/plain", b"\x0c" + REC),
            ("text/plain", b'{"a":1}\xe2\x80\xa8' + REC),
            ("text/plain; charset=iso-8859-1", b"\xa0" + REC),
            ("text/plain; charset=iso-8859-1", b'{"a":1}\x85' + REC),
            ("application/octet-stream", REC + b"xyz"),
            ("text/plain", b"cb(" + REC + b")"),  # JSONP under a non-script type
        ],
    )
    async def test_unsplittable_bodies_are_withheld(self, proxy_env, content_type, sent):
        proxy_env.portal.script(PATH, sent, content_type=content_type)
        response = await proxy_env.get(PATH)
        body = await response.read()
        assert response.status == 502
        assert orjson.loads(body)["error"] == "unsafe_upstream_body"
        assert_nothing_planted(body)

    @pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"])
    async def test_wide_json_without_a_bom_is_withheld(self, proxy_env, codec):
        proxy_env.portal.script(PATH, REC.decode().encode(codec))  # application/json
        response = await proxy_env.get(PATH)
        body = await response.read()
        assert response.status == 502
        assert orjson.loads(body)["error"] == "unsafe_upstream_body"
        assert SSN.encode(codec) not in body
        assert_nothing_planted(body)

    async def test_html_page_with_braces_and_field_names_is_served(self, proxy_env):
        """Markup keeps the token scan: portal pages legitimately hold `{` and "ssn"."""
        token = proxy_env.encrypt("practice-a", "ssn", SSN)
        page = f'<label>SSN</label><script>var f = {{"ssn": 1}};</script><td>{token}</td>'
        proxy_env.portal.script(PATH, page.encode(), content_type="text/html")
        response = await proxy_env.get(PATH)
        assert response.status == 200
        assert await response.read() == (
            b'<label>SSN</label><script>var f = {"ssn": 1};</script><td>***-**-2222</td>'
        )

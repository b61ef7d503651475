"""XML through the real proxy: a C-CDA document and a SOAP call, with `xml:` selectors.

A synthetic C-CDA document (tests/fixtures/cda-ccd-synthetic.xml) and a SOAP 1.2 request
(tests/fixtures/soap-patient-lookup.xml) are written through a write route: the portal stores
ciphertext in exactly the selected places, every other byte as sent. Read back, a grantee gets
the very bytes that were written and anyone else gets masks, no token. Documents with a DTD
(XXE, entity expansion) are refused both ways. Real proxy, real scripted portal, real keys.
"""

import copy
import json
import re
from pathlib import Path

import pytest
from blackbox_env import PLANTED, base_config, running_proxy_env

from keys.token_format import TOKEN_PATTERN, TOKEN_PREFIX

ROOT = Path(__file__).resolve().parents[2]
CDA = (ROOT / "tests" / "fixtures" / "cda-ccd-synthetic.xml").read_bytes()
SOAP = (ROOT / "tests" / "fixtures" / "soap-patient-lookup.xml").read_bytes()
SSN = "900-07-7777"
MEMBER_ID = "DEMO-A001-07919"
#: Every value the selectors pick out of the two fixtures (the portal must see none of them).
CDA_VALUES = (
    SSN,
    "Type 2 diabetes mellitus &amp; seasonal allergies (synthetic)",
    "44054006",
    "Diabetes mellitus type 2",
)
#: The fixture's selected bytes, each to become one token (`@` in a skeleton).
CDA_SELECTED = (
    ('extension="900-07-7777"', 'extension="@"'),
    (
        "<text>Type 2 diabetes mellitus &amp; seasonal allergies (synthetic)</text>",
        "<text>@</text>",
    ),
    (
        'code="44054006" codeSystem="2.16.840.1.113883.6.96"\n'
        + 18 * " "
        + '       displayName="Diabetes mellitus type 2"',
        'code="@" codeSystem="@"\n                         displayName="@"',
    ),
)
PLANTED.update({SSN, MEMBER_ID, "Diabetes mellitus type 2", "44054006"})
WRITE = "/api/practices/practice-a/patients"
READ = "/api/practices/practice-a/patients/7"
NOTES = "/api/notes"
CDA_TYPE = "application/xml"
SOAP_TYPE = "application/soap+xml; charset=utf-8"


def _xml_fields() -> dict:
    fields = copy.deepcopy(base_config("http://unused.invalid")["fields"])
    fields["xml_namespaces"] = {
        "hl7": "urn:hl7-org:v3",
        "soap": "http://www.w3.org/2003/05/soap-envelope",
    }
    fields["selectors"] += [
        {
            "class": "ssn",
            "xml": "//hl7:patientRole/hl7:id[@root='2.16.840.1.113883.4.1']/@extension",
        },
        {"class": "history", "xml": "//hl7:section/hl7:text"},
        {"class": "history", "xml": "//hl7:observation/hl7:value"},
        {"class": "insurance_id", "xml": "/soap:Envelope/soap:Body//@member_id"},
    ]
    return fields


@pytest.fixture
async def env(tmp_path):
    async with running_proxy_env(tmp_path, overrides={"fields": _xml_fields()}) as env:
        await env.grant("alice", "practice-a")
        await env.grant("bob", "practice-b")
        yield env


async def _post(env, path, body, content_type, sub="alice"):
    response = await env.get(
        path, method="POST", data=body, headers={"Content-Type": content_type}, sub=sub
    )
    return response.status, await response.read()


async def _stored(env, document, content_type):
    """Write `document` through the proxy; the portal answers reads with what it stored."""
    status, _ = await _post(env, WRITE, document, content_type)
    assert status == 200
    stored = env.portal.last().body
    env.portal.script(READ, stored, content_type=content_type.split(";")[0])
    return stored


def _skeleton(body: bytes) -> str:
    return TOKEN_PATTERN.sub("@", body.decode())


class TestCda:
    async def test_the_portal_stores_ciphertext_in_exactly_the_selected_places(self, env):
        """SSN, problem narrative and coded value arrive as tokens; every other byte as sent."""
        stored = await _stored(env, CDA, CDA_TYPE)
        expected = CDA.decode()
        for value in CDA_VALUES:
            assert value.encode() not in stored
        for written, skeleton in CDA_SELECTED:
            assert written in expected
            expected = expected.replace(written, skeleton)
        assert _skeleton(stored) == expected
        assert b'xsi:type="CD"' in stored
        assert b'extension="MRN-000117"' in stored

    async def test_a_grantee_reads_back_the_bytes_that_were_written(self, env):
        """Decrypted in place and XML-escaped as before: the document byte for byte."""
        await _stored(env, CDA, CDA_TYPE)
        response = await env.get(READ, sub="alice")
        assert response.status == 200
        assert await response.read() == CDA
        assert response.headers["Cache-Control"] == "no-store"

    @pytest.mark.parametrize("sub", ["bob", None], ids=["other-practice", "anonymous"])
    async def test_anyone_else_gets_masks_and_no_token(self, env, sub):
        """The SSN keeps its last four; history is the redacted text; the XML still parses."""
        await _stored(env, CDA, CDA_TYPE)
        response = await env.get(READ, sub=sub)
        body = await response.read()
        assert response.status == 200
        assert TOKEN_PREFIX.encode() not in body
        assert b'<id root="2.16.840.1.113883.4.1" extension="***-**-7777"/>' in body
        assert b"<text>[redacted]</text>" in body
        assert b'xsi:type="CD" code="[redacted]" codeSystem="[redacted]"' in body
        for value in CDA_VALUES:
            assert value.encode() not in body

    async def test_without_xml_selectors_the_document_is_refused(self, tmp_path):
        """The default policy cannot read XML: a CDA naming an `ssn`-like field is 415."""
        async with running_proxy_env(tmp_path) as plain:
            await plain.grant("alice", "practice-a")
            body = b"<ClinicalDocument><ssn>" + SSN.encode() + b"</ssn></ClinicalDocument>"
            status, answer = await _post(plain, NOTES, body, CDA_TYPE)
            assert status == 415
            assert json.loads(answer)["error"] == "request_rejected"
            assert plain.portal.received == []


class TestSoap:
    async def test_a_soap_call_is_encrypted_and_read_back_unchanged(self, env):
        """<p:SSN> (a key selector) and @member_id (an xml selector) are tokens at the portal."""
        stored = await _stored(env, SOAP, SOAP_TYPE)
        assert SSN.encode() not in stored
        assert MEMBER_ID.encode() not in stored
        assert _skeleton(stored) == SOAP.decode().replace(SSN, "@").replace(MEMBER_ID, "@")
        response = await env.get(READ, sub="alice")
        assert await response.read() == SOAP
        response = await env.get(READ, sub="bob")
        masked = await response.read()
        assert b"<p:SSN>***-**-7777</p:SSN>" in masked
        assert b'member_id="[redacted]"' in masked


XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b"<p><note>&x;</note></p>"
)
LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">'.encode()
        for n in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>"
)


class TestDeclarations:
    @pytest.mark.parametrize("body", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
    @pytest.mark.parametrize("path", [WRITE, NOTES], ids=["write-route", "other-route"])
    async def test_a_request_with_a_dtd_is_refused(self, env, body, path):
        """422 with a problem body that says why; the portal receives nothing."""
        status, answer = await _post(env, path, body, "text/xml")
        assert status == 422
        problem = json.loads(answer)
        assert problem["error"] == "request_rejected"
        assert "DOCTYPE" in problem["message"]
        assert env.portal.received == []

    @pytest.mark.parametrize("body", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
    async def test_an_answer_with_entity_declarations_is_withheld(self, env, body):
        """A client's parser would expand what the proxy never saw: 502, none of it sent."""
        env.portal.script(READ, body, content_type="application/xml")
        response = await env.get(READ, sub="alice")
        answer = await response.read()
        assert response.status == 502
        assert b"lol" not in answer
        assert b"passwd" not in answer

    async def test_an_entity_spelling_a_field_is_refused_even_without_xml_selectors(self, tmp_path):
        """`<s&#115;n>` inside an entity hides the name from a byte search: 415, as named."""
        async with running_proxy_env(tmp_path) as plain:
            body = b'<!DOCTYPE p [<!ENTITY e "<s&#115;n>900-07-7777</s&#115;n>">]><p>&e;</p>'
            status, answer = await _post(plain, NOTES, body, "application/xml", sub=None)
            assert status == 415
            assert re.search("declares XML entities", json.loads(answer)["message"])
            assert plain.portal.received == []

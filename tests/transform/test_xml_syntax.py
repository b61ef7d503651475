"""The XML selector subset and the safe XML reader: what they accept, refuse and locate."""

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from proxy.transform.names import normalize_name
from proxy.transform.settings import FieldSettings
from proxy.transform.testing import TEST_FIELDS
from proxy.transform.xml_document import (
    XmlRefused,
    escape_attribute,
    escape_text,
    parse_xml,
)
from proxy.transform.xml_selectors import XmlSelectorError, compile_xml_selector

HL7 = "urn:hl7-org:v3"
NAMESPACES = {"hl7": HL7}


def _normalize(name):
    return normalize_name(name, fold_separators=True)


def _compile(text):
    return compile_xml_selector(text, NAMESPACES, _normalize)


def _settings(selector, namespaces=NAMESPACES):
    fields = copy.deepcopy(TEST_FIELDS)
    fields["xml_namespaces"] = namespaces
    fields["selectors"].append({"class": "ssn", "xml": selector})
    return FieldSettings.model_validate(fields)


class TestSelectorSyntax:
    def test_a_cda_ssn_selector_compiles_to_steps_predicate_and_attribute(self):
        """Prefixes resolve to their URI, names normalize, the predicate keeps its value."""
        sel = _compile("//hl7:patientRole/hl7:id[@root='2.16.840.1.113883.4.1']/@extension")
        assert [(s.descendant, s.uri, s.local) for s in sel.steps] == [
            (True, HL7, "patientrole"),
            (False, HL7, "id"),
        ]
        ((test, value),) = sel.steps[1].predicates
        assert (test.uri, test.local, value) == (None, "root", "2.16.840.1.113883.4.1")
        assert (sel.attribute.uri, sel.attribute.local) == (None, "extension")
        assert sel.required_names() == {"extension"}

    def test_unprefixed_names_match_any_namespace_and_star_any_name(self):
        """`ssn` has no namespace test; `*` has no name test (and needs every body read)."""
        assert _compile("//ssn").steps[0].uri is None
        star = _compile("/*/*")
        assert [s.local for s in star.steps] == [None, None]
        assert star.required_names() is None

    def test_an_attribute_anywhere(self):
        """`//@ssn` alone reaches the attribute on every element."""
        sel = _compile("//@ssn")
        assert (sel.steps, sel.attribute_below, sel.attribute.local) == ((), True, "ssn")

    @pytest.mark.parametrize(
        ("text", "says"),
        [
            ("ssn", "starts with /"),
            ("//x:ssn", "prefix 'x' is not bound"),
            ("//ssn/@a/b", "attribute step must be the last"),
            ("/@a", "/@name has no element"),
            ("//ssn[1]", "must test an attribute"),
            ("//ssn[@a=b]", "expected a quoted value"),
            ("//ssn[@a='b' or @c]", "expected ']'"),
            ("//ssn/text()", "expected / or //"),
            ("//", "expected a name"),
            ("//1ssn", "expected a name"),
        ],
    )
    def test_what_is_outside_the_subset_is_refused_with_its_position(self, text, says):
        """Every refusal names what was expected and where."""
        with pytest.raises(XmlSelectorError, match="position") as caught:
            _compile(text)
        assert says in str(caught.value)

    def test_a_bad_selector_is_a_config_error_naming_the_selector(self):
        """Checked at load: the message names fields.selectors[n].xml and the problem."""
        with pytest.raises(ValidationError, match=r"selectors\[5\]\.xml: prefix 'cda'"):
            _settings("//cda:id/@extension")

    def test_namespace_prefixes_are_checked_at_load(self):
        """A prefix must be a name not starting with xml, and bound to a URI."""
        with pytest.raises(ValidationError, match="not a usable prefix"):
            _settings("//ssn", {"xmlns": HL7})
        with pytest.raises(ValidationError, match="needs a namespace URI"):
            _settings("//ssn", {"hl7": " "})

    def test_a_selector_gives_exactly_one_of_keys_path_xml(self):
        """`xml` cannot be combined with `keys` or `path`."""
        fields = copy.deepcopy(TEST_FIELDS)
        fields["selectors"].append({"class": "ssn", "xml": "//ssn", "keys": ["ssn"]})
        with pytest.raises(ValidationError, match="exactly one of"):
            FieldSettings.model_validate(fields)


BODY = (
    b'<?xml version="1.0"?>\n<!-- c --><a xmlns="urn:x" xmlns:q="urn:q" q:b="1&amp;2" '
    b"c='x'>\n  <b/><![CDATA[x<y]]>&#57;<c>\xc3\xa9</c></a>"
)


class TestReader:
    def test_spans_locate_the_exact_bytes_of_values(self):
        """Attribute value spans sit between the quotes; content spans between the tags."""
        root = parse_xml(BODY, max_depth=8, forbid_dtd=True)
        assert (root.uri, root.local) == ("urn:x", "a")
        b, c = root.attributes
        assert (b.uri, b.local, b.value) == ("urn:q", "b", "1&2")
        assert BODY[slice(*b.value_span)] == b"1&amp;2"
        assert BODY[slice(*c.span)] == b" c='x'"
        empty, child = root.children
        assert empty.content_start == -1
        assert BODY[empty.start : empty.end] == b"<b/>"
        assert BODY[child.content_start : child.content_end] == "é".encode()
        assert root.value == "\n  x<y9"
        assert not root.text_only
        assert child.text_only

    @pytest.mark.parametrize(
        "body",
        [
            b'<!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>',
            b'<!DOCTYPE a SYSTEM "file:///etc/passwd"><a/>',
            b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>',
            b'<!DOCTYPE a [<!ENTITY a "aa"><!ENTITY b "&a;&a;&a;&a;">]><a>&b;</a>',
        ],
        ids=["internal-entity", "external-dtd", "xxe", "entity-expansion"],
    )
    def test_requests_refuse_any_dtd(self, body):
        """forbid_dtd: no DOCTYPE at all, so no entity, XXE or expansion is ever read."""
        with pytest.raises(XmlRefused) as caught:
            parse_xml(body, max_depth=8, forbid_dtd=True)
        assert caught.value.reason == "xml_dtd"

    def test_responses_allow_a_bare_doctype_but_no_internal_subset(self):
        """`<!DOCTYPE html …>` is a page; an internal subset could add entities or defaults."""
        assert parse_xml(b"<!DOCTYPE html><html/>", max_depth=8, forbid_dtd=False).local == "html"
        for body in (b"<!DOCTYPE a [<!ATTLIST a ssn CDATA '1'>]><a/>", b"<!DOCTYPE a []><a/>"):
            with pytest.raises(XmlRefused, match="xml_dtd"):
                parse_xml(body, max_depth=8, forbid_dtd=False)

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            (b'<?xml version="1.0" encoding="ISO-8859-1"?><a>\xe9</a>', "xml_encoding"),
            ("<a>x</a>".encode("utf-16"), "xml_encoding"),
            (b"<a>&nbsp;</a>", "invalid_xml"),
            (b"<a><b></a>", "invalid_xml"),
            (b"<a>" * 9 + b"</a>" * 9, "too_deep"),
        ],
    )
    def test_what_cannot_be_read_safely_is_refused_with_a_reason(self, body, reason):
        """Other encodings, undefined entities, malformed and too deep bodies are refused."""
        with pytest.raises(XmlRefused) as caught:
            parse_xml(body, max_depth=8, forbid_dtd=True)
        assert caught.value.reason == reason

    def test_utf8_with_a_bom_and_a_utf8_declaration_is_read(self):
        """The BOM counts in the byte offsets, as it must for splicing."""
        body = b'\xef\xbb\xbf<?xml version="1.0" encoding="utf-8"?><a>x</a>'
        root = parse_xml(body, max_depth=8, forbid_dtd=True)
        assert body[root.content_start : root.content_end] == b"x"


_XML_CHARS = st.characters(
    codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="\ufffe\uffff"
) | st.sampled_from("\t\n\r&<>\"']")


@given(st.text(_XML_CHARS, max_size=40))
def test_escaped_text_and_attributes_read_back_exactly(text):
    """What escape_text / escape_attribute write, a parser reads as the very same text."""
    body = f"<a b=\"{escape_attribute(text)}\" c='{escape_attribute(text)}'>{escape_text(text)}</a>"
    root = parse_xml(body.encode(), max_depth=4, forbid_dtd=True)
    assert root.value == text
    assert [a.value for a in root.attributes] == [text, text]


_SELECTOR_PIECES = st.sampled_from(
    ["/", "//", "@", "*", "hl7:", "x:", "ssn", "id", "[", "]", "@root", "=", "'v'", '"w"', " "]
)


@given(st.lists(_SELECTOR_PIECES, max_size=12).map("".join) | st.text(max_size=30))
def test_any_selector_text_compiles_or_is_refused_cleanly(text):
    """The selector parser never fails any other way than with XmlSelectorError."""
    refusal = ""
    try:
        selector = _compile(text)
    except XmlSelectorError as exc:
        refusal = str(exc)
    if refusal:
        assert "position" in refusal
    else:
        assert selector.steps or selector.attribute is not None


_MARKUP = st.sampled_from(
    [
        b"<a>",
        b"</a>",
        b"<b x='1'>",
        b"</b>",
        b"<c/>",
        b"&amp;",
        b"&e;",
        b"<!--c-->",
        b"<![CDATA[x]]>",
        b"<!DOCTYPE a>",
        b"<!ENTITY e 'x'>",
        b"[",
        b"]>",
        b"\xc3\xa9",
        b"\xff",
        b"\x00",
        b'<?xml version="1.0"?>',
        b"text",
        b" ",
    ]
)


@given(st.lists(_MARKUP, max_size=16).map(b"".join) | st.binary(max_size=40))
def test_any_bytes_parse_or_are_refused_cleanly(body):
    """The reader never fails any other way than with XmlRefused, and its spans are in range."""
    for forbid_dtd in (True, False):
        reason = ""
        try:
            root = parse_xml(body, max_depth=8, forbid_dtd=forbid_dtd)
        except XmlRefused as exc:
            reason = exc.reason
        if reason:
            assert reason in {"xml_dtd", "xml_encoding", "invalid_xml", "too_deep"}
        else:
            assert 0 <= root.start < root.end <= len(body)

"""The compiled core answers exactly as the pure-Python core does, or gives up.

`compare_cores` runs both on one body for identical fresh contexts and names any difference in
bytes, in audit facts, or a refusal the compiled core skipped. Random documents hold tokens of
three practices (both cipher modes), legacy plaintext, selected objects and arrays, record
practices and ids of every type, FHIR identifiers picked by path filters, FHIR codings whose
displays a `mask: remove` class leaves out, paths that apply only under a root filter; they
are spelled with random whitespace, escapes and number forms, and decided for callers with and
without grants.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_spelling import render
from transform_helpers import FIELDS, NOBODY, Grants

from keys.native import core_description
from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.settings import FieldSettings
from proxy.transform.testing import compare_cores

FHIR_BUNDLE = Path(__file__).parents[1] / "fixtures" / "fhir-patient-bundle.json"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
PATH_FIELDS = {
    **FIELDS,
    "selectors": [
        *FIELDS["selectors"],
        {"class": "history", "path": "$..[?(@.resourceType=='Condition')].note[*].text"},
        {"class": "insurance_id", "path": "$.coverage[?(@.kind != 'self')].id"},
        {"class": "history", "path": "$..visits[?(@.secret)]"},
        {"class": "insurance_id", "path": "$.claims[1].member"},
        {"class": "diagnosis", "path": "$..coding[*].display"},
        {"class": "diagnosis", "path": "$..[?(@.resourceType=='Condition')].code.text"},
        # Root filters: the path applies only when the document root meets them.
        {
            "class": "diagnosis",
            "path": "$['code','note']..['display','text']",
            "root_filter": "@.resourceType == 'Condition'",
        },
        {
            "class": "insurance_id",
            "path": "$.identifier[*]",
            "root_filter": "@.practice_id && @.resourceType != 'Patient'",
        },
    ],
}
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
CALLERS = [
    NOBODY,
    Grants.of(("A", "ssn")),
    Grants.of(("B", "diagnosis")),
    Grants.all_classes("A"),
    Grants.all_classes("A", "B", "C"),
]
NAMES = [
    "ssn",
    "SSN",
    "Member_ID",
    "member-id",
    "history",
    "name",
    "value",
    "notes",
    "\uff53sn",
    "diagnosis",
    "reasonCode",
]
PLAIN = st.text(max_size=10) | st.sampled_from(["123-45-6789", "9", "", "é✓", "phi1.x"])


@pytest.fixture(scope="module")
def path_policy():
    policy = FieldPolicy.compile(FieldSettings.model_validate(PATH_FIELDS))
    if policy.native is None:
        pytest.skip(f"needs the compiled core; this process runs the {core_description()}")
    return policy


# Strategies are built once here: a strategy made inside a draw is validated (and its lambdas
# parsed for their repr) on every example, which cost more than the cores under test.
_PRACTICE = st.sampled_from("ABCZ")  # Z: no key in this keyring
_CLASS = st.sampled_from(("ssn", "insurance_id", "history", "diagnosis", "other"))
_SCALAR_KIND = st.integers(0, 6)
_SCALARS = (
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.floats(allow_nan=False, allow_infinity=False),
    PLAIN,
)
_SYSTEM = st.sampled_from((SSN_SYSTEM, "urn:other"))
_NAME = st.sampled_from(tuple(NAMES))
_RECORD_PRACTICE = st.sampled_from(("A", "B", 7, None, "Z", True))
_ID_KEY = st.sampled_from(("id", "patient_id"))
_ID = st.one_of(st.text(max_size=4), st.integers(-5, 2**70), st.none())
_RESOURCE_TYPE = st.sampled_from(("Condition", "Patient"))


class _Trees:
    """Draws the parts of a random record tree (one method per kind of part)."""

    def __init__(self, draw, keyring) -> None:
        self.draw = draw
        self.keyring = keyring

    def token(self) -> str:
        draw = self.draw
        practice = draw(_PRACTICE)
        field_class = draw(_CLASS)
        if practice == "Z":
            return "phi1.r.0123456789abcdef." + field_class + "." + "A" * 40
        return self.keyring.encrypt(
            practice, field_class, draw(PLAIN), deterministic=draw(st.booleans())
        )

    def scalar(self) -> object:
        kind = self.draw(_SCALAR_KIND)
        if kind < len(_SCALARS):
            return self.draw(_SCALARS[kind])
        if kind == len(_SCALARS):
            return self.token()
        return "seen " + self.token() + " and " + self.token()

    def node(self, depth: int) -> object:
        kind = self.draw(st.integers(0, 5 if depth < 4 else 0))
        if kind == 0:
            return self.scalar()
        if kind == 1:
            return [self.node(depth + 1) for _ in range(self.draw(st.integers(0, 3)))]
        if kind == 2:
            return {"system": self.draw(_SYSTEM), "value": self.scalar()}
        return self.record(depth)

    def record(self, depth: int) -> dict:
        draw = self.draw
        obj = {draw(_NAME): self.node(depth + 1) for _ in range(draw(st.integers(0, 4)))}
        if draw(st.booleans()):
            obj["practice_id"] = draw(_RECORD_PRACTICE)
        if draw(st.booleans()):
            obj[draw(_ID_KEY)] = draw(_ID)
        if draw(st.booleans()):
            obj["identifier"] = [self.node(depth + 1), self.node(depth + 1)]
        if draw(st.booleans()):
            obj["resourceType"] = draw(_RESOURCE_TYPE)
            obj["note"] = [{"text": self.scalar()}]
        if draw(st.booleans()):
            obj["code"] = self.concept()
        return obj

    def concept(self) -> dict:
        """A FHIR CodeableConcept: codings with displays, maybe a text."""
        draw = self.draw
        coding = [
            {"system": "http://snomed.info/sct", "code": "44465007", "display": self.scalar()}
            for _ in range(draw(st.integers(1, 2)))
        ]
        concept: dict = {"coding": coding}
        if draw(st.booleans()):
            concept["text"] = self.scalar()
        return concept


@st.composite
def phi_trees(draw, keyring):
    """A random record tree holding tokens, plaintext and the context keys the walk reads."""
    return _Trees(draw, keyring).node(0)


def _contexts(policy, keyring, caller, route):
    return lambda: RevealContext(policy, keyring, caller, route, TransformStats())


class TestCoresAgree:
    @SETTINGS
    @given(data=st.data(), seed=st.integers(0, 2**16))
    def test_random_documents_get_the_same_bytes_and_facts(self, path_policy, keyring, data, seed):
        """Any record tree, any spelling, any caller: same bytes and audit facts, or give-up."""
        tree = data.draw(phi_trees(keyring))
        body = render(tree, seed)
        caller = data.draw(st.sampled_from(CALLERS))
        route = data.draw(st.sampled_from([None, "A", "B"]))
        assert compare_cores(body, _contexts(path_policy, keyring, caller, route)) is None

    @SETTINGS
    @given(data=st.data(), seed=st.integers(0, 2**16))
    def test_damaged_bodies_are_refused_alike(self, path_policy, keyring, data, seed):
        """Flipped, cut or inserted bytes: the compiled core never answers what the pure refuses."""
        body = bytearray(render(data.draw(phi_trees(keyring)), seed))
        rng = random.Random(seed)
        for _ in range(data.draw(st.integers(1, 3))):
            where = rng.randrange(len(body) + 1)
            action = rng.randrange(3)
            if action == 0 and where < len(body):
                body[where] = rng.choice(b'{}[],:"\\ \x00\xff\xc3a0e-')
            elif action == 1:
                del body[where : where + rng.randrange(1, 4)]
            else:
                body[where:where] = bytes([rng.randrange(256)])
        caller = data.draw(st.sampled_from(CALLERS))
        assert compare_cores(bytes(body), _contexts(path_policy, keyring, caller, None)) is None


class TestFuzzFindings:
    """Inputs `make fuzz` found the cores disagreeing on, pinned once fixed."""

    def test_two_empty_keys_are_a_duplicate_for_both_cores(self, path_policy, keyring):
        """`{"": 1, "": 2}` is refused (duplicate_key); the compiled core once answered it."""
        body = b'{"[records": [{"": "a", "practice_id": "A", "": "B", "ssn": "z"}]}\n'
        for caller in CALLERS:
            make = _contexts(path_policy, keyring, caller, None)
            assert path_policy.native.transform(body, make()) is None
            assert compare_cores(body, make) is None


class TestCommonShapesStayNative:
    """Giving up is safe but slow: the shapes portals serve every day must not do it."""

    def test_patient_page_is_answered_natively(self, path_policy, keyring):
        """A listing of records with tokens, practices and ids is decided by the compiled core."""
        records = [
            {
                "id": f"p{i}",
                "practice_id": "A",
                "name": "Pat",
                "ssn": keyring.encrypt("A", "ssn", f"123-45-{i:04}", deterministic=True),
                "member_id": keyring.encrypt("A", "insurance_id", "M-1"),
                "history": keyring.encrypt("A", "history", "flu"),
            }
            for i in range(20)
        ]
        body = render({"patients": records}, 1)
        for caller in CALLERS:
            make = _contexts(path_policy, keyring, caller, None)
            assert path_policy.native.transform(body, make()) is not None
            assert compare_cores(body, make) is None

    def test_fhir_bundle_is_answered_natively(self, path_policy, keyring):
        """The pretty-printed FHIR fixture with its SSN identifier is decided natively."""
        ssn = keyring.encrypt("A", "ssn", "999-80-9771", deterministic=True).encode()
        body = FHIR_BUNDLE.read_bytes().replace(b'"999-80-9771"', b'"' + ssn + b'"')
        for caller in CALLERS:
            make = _contexts(path_policy, keyring, caller, "A")
            assert path_policy.native.transform(body, make()) is not None
            assert compare_cores(body, make) is None


BODY_BYTES = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=40).map(lambda t: t.encode("utf-8")),
    st.lists(
        st.sampled_from(
            [
                b'{"',
                b'": ',
                b"SSN",
                b"s_s-n",
                b"Member.ID",
                b"\\u0073",
                b"\\ud83d",
                b"\\u00e9",
                b"\xef\xbd\x93",
                b"\xc5\xbf",
                b"\xc3\xa9",
                b"phi1.",
                b"phi1",
                b"\x00",
                b"\xff",
                b"history",
                b"histor",
                b"y",
                b" ",
                b"_",
                b"identifier",
                b"value",
            ]
        ),
        max_size=12,
    ).map(b"".join),
)


class TestNoPhiProofAgrees:
    @SETTINGS
    @given(body=BODY_BYTES)
    def test_compiled_and_python_flags_agree(self, path_policy, body):
        """The compiled no-PHI proof gives the Python checks' answer on any bytes."""
        native = path_policy._hints.scan(body)
        python_names = path_policy._may_hold_names(body)
        if b"phi1." in body:
            assert native == 1
        else:
            assert native == (2 if b"\x00" in body else 0) | (4 if python_names else 0)
        assert bool(path_policy._hints.may_hold_names(body)) == python_names

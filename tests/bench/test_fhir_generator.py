"""bench/fhir.py: the Synthea-shaped FHIR bundles of `make bench` hold what their facts say."""

import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from keys.testing import make_keyring
from keys.token_format import TOKEN_PATTERN
from proxy.grants import Access, PracticeAccess
from proxy.identity import Subject
from proxy.transform import FieldPolicy, FieldSettings, RevealContext, transform_response

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import fhir  # bench scripts are not a package: found through sys.path above

SMALL = 60_000  # one or two encounter blocks: fast


@pytest.fixture(scope="module")
def keyring():
    return make_keyring([fhir.PRACTICE, "practice-b"])


@pytest.fixture(scope="module")
def tokened(keyring):
    return fhir.bundle(seed=3, target_bytes=SMALL, encrypt=keyring.encrypt)


def _spelled_numbers(body: bytes) -> Counter[str]:
    """Every JSON number with a fraction or exponent, as spelled in the body."""
    found: Counter[str] = Counter()
    json.loads(body, parse_float=lambda text: found.update([text]))
    return found


def _resources(body: bytes) -> list[dict]:
    return [entry["resource"] for entry in json.loads(body)["entry"]]


def test_valid_json_pretty_printed_like_synthea(tokened):
    body, facts = tokened
    doc = json.loads(body)
    assert doc["resourceType"] == "Bundle"
    assert body.startswith(b'{\n  "resourceType": "Bundle",\n  "type": "transaction",\n')
    lines = body.split(b"\n")
    assert len(lines) == len(json.dumps(doc, indent=2).split("\n"))  # one member per line
    assert all((len(ln) - len(ln.lstrip(b" "))) % 2 == 0 for ln in lines)
    assert b"\t" not in body
    assert facts["bytes"] == len(body)
    assert facts["content_type"] == "application/fhir+json"


def test_decimal_spellings_are_raw_json_numbers(tokened):
    body, facts = tokened
    spelled = _spelled_numbers(body)
    for spelling in fhir.DECIMAL_SPELLINGS:
        assert facts["decimal_spellings"][spelling] >= 1
        assert spelled[spelling] == facts["decimal_spellings"][spelling], spelling
        assert re.search(rb'"value": ' + re.escape(spelling.encode()) + rb",\n", body)
    assert b'"8E+1"' not in body  # a number, not a string


def test_resource_counts_and_shape(tokened):
    body, facts = tokened
    resources = _resources(body)
    assert dict(Counter(r["resourceType"] for r in resources)) == facts["resources"]
    for kind in (
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "MedicationRequest",
        "Claim",
        "ExplanationOfBenefit",
    ):
        assert facts["resources"][kind] >= 1, kind
    patient = resources[0]
    systems = {i["system"] for i in patient["identifier"]}
    assert {
        fhir.SSN_SYSTEM,
        fhir.DRIVERS_LICENSE_SYSTEM,
        fhir.PASSPORT_SYSTEM,
        fhir.MRN_SYSTEM,
    } <= systems
    assert {"name", "telecom", "address", "extension", "birthDate"} <= patient.keys()
    entries = json.loads(body)["entry"]
    assert all(e["request"]["method"] == "POST" for e in entries)
    assert all(e["fullUrl"] == f"urn:uuid:{e['resource']['id']}" for e in entries)


def test_size_near_target():
    for target in (SMALL, 150_000):
        body, facts = fhir.bundle(seed=1, target_bytes=target, phi="plain")
        assert abs(len(body) - target) < 25_000  # within half an encounter block (~35 KB)
        assert facts["encounters"] >= 1


def test_deterministic_for_a_seed():
    a, facts_a = fhir.bundle(seed=5, target_bytes=SMALL, phi="plain")
    b, facts_b = fhir.bundle(seed=5, target_bytes=SMALL, phi="plain")
    c, _ = fhir.bundle(seed=6, target_bytes=SMALL, phi="plain")
    assert a == b
    assert facts_a == facts_b
    assert a != c


def test_deterministic_tokens_decrypt_back_to_the_plain_bundle(keyring):
    """With tokens only the ciphertext differs: opening every token gives the plain bundle."""
    plain, facts_plain = fhir.bundle(seed=5, encounters=2, phi="plain")
    tokened, _ = fhir.bundle(seed=5, encounters=2, encrypt=keyring.encrypt)
    opened = TOKEN_PATTERN.sub(
        lambda m: keyring.open(m.group(0)).plaintext.replace("\\", "\\\\").replace('"', '\\"'),
        tokened.decode(),
    )
    assert opened.encode() == plain
    assert facts_plain["encounters"] == 2


def test_token_facts_are_true(tokened, keyring):
    body, facts = tokened
    text = body.decode()
    found = TOKEN_PATTERN.findall(text)
    assert len(found) == len(facts["phi_values"]) == sum(facts["tokens"].values())
    assert facts["plaintext"] == {}
    assert [v["written"] for v in facts["phi_values"]] == found  # in document order
    by_class: Counter[str] = Counter()
    for value in facts["phi_values"]:
        practice, field_class, plaintext = keyring.open_fast(value["written"])
        assert practice == fhir.PRACTICE
        assert field_class == value["class"]
        assert plaintext == value["plaintext"]
        assert value["form"] == "token"
        assert f'"{value["plaintext"]}"' not in text  # no PHI in clear
        by_class[field_class] += 1
    assert dict(by_class) == facts["tokens"]
    assert set(facts["tokens"]) == {"ssn", "insurance_id", "history"}
    ssn = next(v["written"] for v in facts["phi_values"] if v["class"] == "ssn")
    assert ssn.startswith("phi1.d.")  # AES-SIV, as the example config's ssn class says
    patient = _resources(body)[0]
    ssn_id = next(i for i in patient["identifier"] if i["system"] == fhir.SSN_SYSTEM)
    assert ssn_id["value"] == ssn


def test_plaintext_and_mixed_facts_are_true(keyring):
    body, facts = fhir.bundle(seed=2, target_bytes=SMALL, phi="plain")
    text = body.decode()
    assert "phi1." not in text
    assert facts["tokens"] == {}
    for value in facts["phi_values"]:
        assert value["written"] == value["plaintext"]
        assert f'"{value["member"]}": "{value["plaintext"]}"' in text
    counts = Counter(v["class"] for v in facts["phi_values"])
    assert dict(counts) == facts["plaintext"]
    mixed, mixed_facts = fhir.bundle(
        seed=2, target_bytes=SMALL, phi="mixed", encrypt=keyring.encrypt
    )
    forms = [v["form"] for v in mixed_facts["phi_values"]]
    assert forms[:2] == ["token", "plaintext"]
    assert len(TOKEN_PATTERN.findall(mixed.decode())) == forms.count("token")
    assert sum(mixed_facts["tokens"].values()) == forms.count("token")
    assert sum(mixed_facts["plaintext"].values()) == forms.count("plaintext")


def test_collection_bundles_have_no_requests():
    body, facts = fhir.bundle(seed=1, encounters=1, phi="plain", bundle_type="collection")
    doc = json.loads(body)
    assert doc["type"] == facts["bundle_type"] == "collection"
    assert all("request" not in e for e in doc["entry"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="encrypt"):
        fhir.bundle(encounters=1)
    with pytest.raises(ValueError, match="phi"):
        fhir.bundle(encounters=1, phi="cipher")
    with pytest.raises(ValueError, match="bundle_type"):
        fhir.bundle(encounters=1, phi="plain", bundle_type="searchset-ish")


def test_example_config_selects_every_phi_value(tokened, keyring):
    """Through the real transform with the example config: a grantee reads all, others none."""
    body, facts = tokened
    policy = FieldPolicy.compile(FieldSettings.model_validate(fhir.example_fields()))
    subject = Subject("https://idp.test", "dr")
    scope = {
        fhir.PRACTICE: PracticeAccess(all_fields=True, field_classes=frozenset(), grant_ids=("g",))
    }
    for access, shown in ((Access(subject, scope), True), (Access(subject), False)):
        ctx = RevealContext(policy, keyring, access)
        out = transform_response(body, fhir.CONTENT_TYPE, ctx).decode()
        assert "phi1." not in out
        for value in facts["phi_values"]:
            assert (json.dumps(value["plaintext"]) in out) is shown, value["class"]
    # Legacy plaintext without a practice key is masked even for a grantee (unknown practice).
    plain, plain_facts = fhir.bundle(seed=3, target_bytes=SMALL, phi="plain")
    ctx = RevealContext(policy, keyring, Access(subject, scope))
    out = transform_response(plain, fhir.CONTENT_TYPE, ctx).decode()
    assert all(json.dumps(v["plaintext"]) not in out for v in plain_facts["phi_values"])

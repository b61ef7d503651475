"""The example config's field policy on a real Synthea bundle: no diagnosis left for strangers.

`config/proxy.example.yaml` selects FHIR diagnoses wherever a Synthea / US Core bundle repeats
them (Condition codes and notes, `reasonCode`, claim and benefit lines, reference displays,
narratives, base64 clinical notes) as class `history`, whose mask is `remove`. A caller
without a history grant gets the bundle without any of them, as FHIR JSON that is still valid
(no null, no empty object or array); a grantee gets every byte; both cores agree, natively.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml
from transform_helpers import NOBODY, Grants

from keys.native import core_description
from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.response import transform_json_pure
from proxy.transform.settings import FieldSettings
from proxy.transform.testing import compare_cores

ROOT = Path(__file__).resolve().parents[2]
SYNTHEA = ROOT / "tests" / "fixtures" / "synthea-lynwood354-diagnoses.json"
EXAMPLE_FIELDS = yaml.safe_load((ROOT / "config" / "proxy.example.yaml").read_text())["fields"]
#: Callers without a history grant: nobody, a grantee of another class, of another practice.
STRANGERS = [NOBODY, Grants.of(("A", "ssn")), Grants.of(("B", "history"))]


@pytest.fixture(scope="module")
def example_policy():
    return FieldPolicy.compile(FieldSettings.model_validate(EXAMPLE_FIELDS))


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return SYNTHEA.read_bytes()


def _resources(doc: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == kind]


def _diagnoses(doc: dict) -> tuple[set[str], set[str]]:
    """(every display and text of the bundle's Conditions, their codes)."""
    texts: set[str] = set()
    codes: set[str] = set()
    for condition in _resources(doc, "Condition"):
        concept = condition["code"]
        texts.update(c["display"] for c in concept["coding"])
        texts.add(concept["text"])
        codes.update(c["code"] for c in concept["coding"])
    return texts, codes


def _readable(body: bytes) -> str:
    """The body as a reader sees it: its text plus every base64 attachment decoded, lowercased."""
    found = [body.decode()]

    def attachments(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("data"), str) and "contentType" in node:
                found.append(base64.b64decode(node["data"]).decode())
            for item in node.values():
                attachments(item)
        elif isinstance(node, list):
            for item in node:
                attachments(item)

    attachments(json.loads(body))
    return "\n".join(found).lower()


def _not_fhir_json(node: object, path: str = "$") -> list[str]:
    """Where `node` breaks FHIR JSON's rules: null, or an empty object or array."""
    if node is None:
        return [path]
    if isinstance(node, dict | list) and not node:
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _not_fhir_json(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _not_fhir_json(v, f"{path}[{i}]")]
    return []


def _context(policy: FieldPolicy, keyring, caller):
    # Synthea records name no practice: the read route's practice is the bundle's.
    return lambda: RevealContext(policy, keyring, caller, "A", TransformStats())


class TestSyntheaBundle:
    def test_the_fixture_repeats_its_diagnoses_everywhere_the_policy_looks(self, bundle):
        """The cut still holds what the selectors are for: Conditions, reasons, claims, notes."""
        doc = json.loads(bundle)
        texts, _ = _diagnoses(doc)
        readable = _readable(bundle)
        assert len(texts) >= 4
        assert _not_fhir_json(doc) == []
        for kind in ("Encounter", "Claim", "ExplanationOfBenefit", "DocumentReference"):
            shown = _readable(json.dumps(_resources(doc, kind)).encode())
            assert any(t.lower() in shown for t in texts), kind
        assert all(t.lower() in readable for t in texts)

    @pytest.mark.parametrize("caller", STRANGERS)
    def test_a_stranger_sees_no_diagnosis_display_text_or_code(
        self, example_policy, keyring, bundle, caller
    ):
        """No Condition display, text or code survives: in reasons, claims, notes, narratives."""
        texts, codes = _diagnoses(json.loads(bundle))
        out = transform_json_pure(bundle, _context(example_policy, keyring, caller)())
        readable = _readable(out)
        for text in texts:
            assert text.lower() not in readable
            assert text.lower().removesuffix(" (disorder)") not in readable
        for code in codes:
            assert not re.search(rf"\b{code}\b", out.decode())

    def test_what_a_stranger_gets_is_still_fhir_json(self, example_policy, keyring, bundle):
        """Members left out, never null; what they empty is left out too; resources stay."""
        out = transform_json_pure(bundle, _context(example_policy, keyring, NOBODY)())
        doc = json.loads(out)
        assert _not_fhir_json(doc) == []
        before = json.loads(bundle)
        assert [e["fullUrl"] for e in doc["entry"]] == [e["fullUrl"] for e in before["entry"]]
        for condition in _resources(doc, "Condition"):
            assert "code" not in condition  # optional in FHIR R4: emptied, so removed
            assert condition["clinicalStatus"]["coding"][0]["code"]  # not a diagnosis
        for encounter in _resources(doc, "Encounter"):
            assert "reasonCode" not in encounter
            assert "text" not in encounter
        for claim in _resources(doc, "Claim") + _resources(doc, "ExplanationOfBenefit"):
            for item in claim.get("item", []):
                assert item["productOrService"]["coding"][0]["system"]  # required: kept
        for report in _resources(doc, "DocumentReference"):
            assert report["content"][0]["attachment"] == {"contentType": "text/plain"}

    def test_a_grantee_gets_every_byte(self, example_policy, keyring, bundle):
        """A caller who may see the route's practice gets the bundle as it came, audited."""
        ctx = _context(example_policy, keyring, Grants.all_classes("A"))()
        assert transform_json_pure(bundle, ctx) is bundle
        assert ctx.stats.plaintext_kept["history"] > 0
        assert ctx.stats.plaintext_kept["ssn"] == 1

    @pytest.mark.parametrize("caller", [*STRANGERS, Grants.all_classes("A")])
    def test_both_cores_agree_and_the_compiled_one_answers(
        self, example_policy, keyring, bundle, caller
    ):
        """Same bytes and audit facts from both cores; the compiled core does not give up."""
        if example_policy.native is None:
            pytest.skip(f"needs the compiled core; this process runs the {core_description()}")
        make = _context(example_policy, keyring, caller)
        assert example_policy.native.transform(bundle, make()) is not None
        assert compare_cores(bundle, make) is None


class TestResourcesReadOnTheirOwn:
    """`GET /Condition/1` answers one resource, not a Bundle: the root filters cover it."""

    @pytest.mark.parametrize("kind", ["Condition", "Encounter", "Claim", "DocumentReference"])
    def test_a_stranger_sees_no_diagnosis_in_a_resource_read_alone(
        self, example_policy, keyring, bundle, kind
    ):
        doc = json.loads(bundle)
        texts, codes = _diagnoses(doc)
        for resource in _resources(doc, kind):
            body = json.dumps(resource, indent=1).encode()
            out = transform_json_pure(body, _context(example_policy, keyring, NOBODY)())
            readable = _readable(out)
            assert not [t for t in texts if t.lower() in readable], kind
            assert not [c for c in codes if re.search(rf"\b{c}\b", out.decode())], kind
            assert _not_fhir_json(json.loads(out)) == []

    def test_a_condition_alone_keeps_what_is_not_a_diagnosis(self, example_policy, keyring, bundle):
        condition = _resources(json.loads(bundle), "Condition")[0]
        body = json.dumps(condition).encode()
        out = json.loads(transform_json_pure(body, _context(example_policy, keyring, NOBODY)()))
        assert "code" not in out
        assert out["clinicalStatus"] == condition["clinicalStatus"]
        assert out["subject"] == condition["subject"]

    def test_the_root_filter_leaves_other_resources_alone(self, example_policy, keyring):
        """An Observation's code names what was measured; it is no Condition: it stays."""
        body = json.dumps(
            {"resourceType": "Observation", "code": {"coding": [{"display": "Body weight"}]}}
        ).encode()
        assert transform_json_pure(body, _context(example_policy, keyring, NOBODY)()) is body

    def test_a_binary_alone_loses_its_data(self, example_policy, keyring):
        note = base64.b64encode(b"Diagnosed with acute bronchitis").decode()
        body = json.dumps(
            {"resourceType": "Binary", "contentType": "text/plain", "data": note}
        ).encode()
        out = transform_json_pure(body, _context(example_policy, keyring, NOBODY)())
        assert json.loads(out) == {"resourceType": "Binary", "contentType": "text/plain"}

    @pytest.mark.parametrize("caller", [NOBODY, Grants.all_classes("A")])
    def test_both_cores_agree_on_a_condition_read_alone(
        self, example_policy, keyring, bundle, caller
    ):
        if example_policy.native is None:
            pytest.skip(f"needs the compiled core; this process runs the {core_description()}")
        condition = _resources(json.loads(bundle), "Condition")[0]
        make = _context(example_policy, keyring, caller)
        body = json.dumps(condition).encode()
        assert example_policy.native.transform(body, make()) is not None
        assert compare_cores(body, make) is None

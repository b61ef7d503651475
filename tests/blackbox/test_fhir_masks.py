"""`mask: remove` through the real proxy: FHIR bundles without the diagnoses, still valid FHIR.

The proxy runs the example config's field policy (`history` is `mask: remove`, selected
wherever a Synthea bundle repeats a diagnosis) in front of a scripted portal. A real Synthea
bundle is written through a write route (the portal stores ciphertext) and read back: a
grantee gets the bytes that were written; anyone else gets the bundle with those members left
out, never `null`, and no empty object or array left behind. Legacy plaintext on a read route
is decided the same way.
"""

import json
from pathlib import Path

import pytest
import yaml
from blackbox_env import running_proxy_env

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = (ROOT / "tests" / "fixtures" / "synthea-lynwood354-diagnoses.json").read_bytes()
FIELDS = yaml.safe_load((ROOT / "config" / "proxy.example.yaml").read_text())["fields"]
FHIR_JSON = "application/fhir+json"
WRITE_PATH = "/fhir/practices/practice-a/Bundle"
READ_PATH = "/fhir/practices/practice-a/Bundle/synthea"
ROUTE = {"practice_from": {"path_param": "practice_id"}}
OVERRIDES = {
    "fields": FIELDS,
    "limits": {"max_request_body": 1 << 20, "max_response_body": 1 << 22},
    "write_routes": [
        {"method": "POST", "path": "/fhir/practices/{practice_id}/Bundle", **ROUTE},
    ],
    "read_routes": [
        {"method": "GET", "path": "/fhir/practices/{practice_id}/Bundle/{id}", **ROUTE},
    ],
}
#: Callers who may not see practice-a's history: anonymous, no grant, another practice, ssn only.
STRANGERS = [
    (None, None),
    ("mallory", None),
    ("bob", ("practice-b", None)),
    ("carol", ("practice-a", frozenset({"ssn"}))),
]


def _conditions(doc: dict) -> list[dict]:
    return [e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Condition"]


DIAGNOSES = {
    text
    for condition in _conditions(json.loads(BUNDLE))
    for text in [condition["code"]["text"], *(c["display"] for c in condition["code"]["coding"])]
}


def _empty_or_null(node: object, path: str = "$") -> list[str]:
    """Paths FHIR JSON forbids: null, an empty object, an empty array."""
    if node is None or (isinstance(node, dict | list) and not node):
        return [path]
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _empty_or_null(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _empty_or_null(v, f"{path}[{i}]")]
    return []


@pytest.fixture
async def env(tmp_path):
    async with running_proxy_env(tmp_path, overrides=OVERRIDES) as env:
        yield env


async def _read(env, sub):
    response = await env.get(READ_PATH, sub=sub)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith(FHIR_JSON)
    return await response.read()


def _assert_no_diagnosis(body: bytes) -> None:
    text = body.decode()
    assert [d for d in DIAGNOSES if d in text] == []
    doc = json.loads(body)
    assert _empty_or_null(doc) == []
    assert len(doc["entry"]) == len(json.loads(BUNDLE)["entry"])  # resources stay
    for condition in _conditions(doc):
        assert "code" not in condition  # the member is left out, not null
    for entry in doc["entry"]:
        assert "reasonCode" not in entry["resource"]


class TestWrittenThroughTheProxy:
    @pytest.fixture
    async def stored(self, env):
        """The bundle POSTed by a grantee; what the portal stored is what it then serves."""
        await env.grant("alice", "practice-a")
        response = await env.get(
            WRITE_PATH,
            sub="alice",
            method="POST",
            data=BUNDLE,
            headers={"Content-Type": FHIR_JSON},
        )
        assert response.status == 200
        stored = env.portal.last().body
        env.portal.script(READ_PATH, stored, content_type=FHIR_JSON)
        return stored

    async def test_the_portal_stores_no_diagnosis(self, stored):
        """Every selected value reached the portal as a token."""
        assert [d for d in DIAGNOSES if d in stored.decode()] == []
        assert stored.count(b"phi1.") > len(DIAGNOSES)

    @pytest.mark.usefixtures("stored")
    async def test_a_grantee_reads_back_the_bytes_that_were_written(self, env):
        assert await _read(env, "alice") == BUNDLE

    @pytest.mark.usefixtures("stored")
    @pytest.mark.parametrize(("sub", "grant"), STRANGERS)
    async def test_anyone_else_gets_valid_fhir_without_the_diagnoses(self, env, sub, grant):
        if grant is not None:
            await env.grant(sub, grant[0], fields=grant[1])
        _assert_no_diagnosis(await _read(env, sub))


class TestLegacyPlaintextOnAReadRoute:
    async def test_the_grantee_gets_the_value_and_a_stranger_gets_no_member(self, env):
        """Plaintext the portal held before the proxy: decided by the read route's practice."""
        env.portal.script(READ_PATH, BUNDLE, content_type=FHIR_JSON)
        await env.grant("alice", "practice-a", fields=frozenset({"history", "ssn"}))
        assert await _read(env, "alice") == BUNDLE
        for sub, grant in STRANGERS:
            if grant is not None:
                await env.grant(sub, grant[0], fields=grant[1])
            _assert_no_diagnosis(await _read(env, sub))

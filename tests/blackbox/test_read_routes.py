"""`read_routes`: the practice in a read route's path decides legacy plaintext of its records.

Records that name no practice themselves (FHIR resources, data stored before the proxy) are meant.

Without a read route such plaintext is masked for everyone, the practice's own staff included;
with one, a grantee of that practice reads it and everyone else still gets the mask. A record
that names its own practice, and every token, are decided by their own practice as before.
Real proxy, real portal, real SQLite grants; assertions on the bytes the client receives.
"""

import json

import pytest
from blackbox_env import running_proxy_env

SSN = "900-71-2345"
HISTORY = "type 2 diabetes"
LEGACY = {
    "resourceType": "Bundle",
    "entry": [{"resource": {"resourceType": "Patient", "id": "p1", "ssn": SSN}}],
}
PATH_A = "/fhir/practices/practice-a/Patient"
PATH_B = "/fhir/practices/practice-b/Patient"
READ_ROUTES = [
    {
        "method": "GET",
        "path": "/fhir/practices/{practice_id}/Patient",
        "practice_from": {"path_param": "practice_id"},
    }
]


@pytest.fixture
async def env(tmp_path):
    async with running_proxy_env(tmp_path, overrides={"read_routes": READ_ROUTES}) as env:
        for path in (PATH_A, PATH_B):
            env.portal.script(path, json.dumps(LEGACY))
        yield env


async def _ssn(env, path, sub):
    response = await env.get(path, sub=sub)
    assert response.status == 200
    return json.loads(await response.read())["entry"][0]["resource"]["ssn"]


async def test_a_grantee_reads_legacy_plaintext_on_its_practices_read_route(env):
    await env.grant("alice", "practice-a", fields=frozenset({"ssn"}))
    assert await _ssn(env, PATH_A, "alice") == SSN


@pytest.mark.parametrize(
    ("sub", "grant"),
    [
        (None, None),  # anonymous
        ("mallory", None),  # no grant
        ("bob", ("practice-b", None)),  # a grant for the other practice
        ("carol", ("practice-a", frozenset({"history"}))),  # another class at this practice
    ],
)
async def test_everyone_else_gets_the_mask(env, sub, grant):
    if grant is not None:
        await env.grant(sub, grant[0], fields=grant[1])
    shown = await _ssn(env, PATH_A, sub)
    assert shown != SSN
    assert SSN[-4:] in shown  # the ssn mask keeps the last four


async def test_a_grant_for_one_practice_does_not_open_another_practices_route(env):
    """The practice comes from the path the portal answers for, not from the caller."""
    await env.grant("alice", "practice-a")
    assert await _ssn(env, PATH_B, "alice") != SSN


async def test_without_a_read_route_legacy_plaintext_stays_masked_for_grantees(env):
    """Another path (not declared) names no practice: masked for everyone, as before."""
    await env.grant("alice", "practice-a")
    env.portal.script("/fhir/Patient", json.dumps(LEGACY))
    assert await _ssn(env, "/fhir/Patient", "alice") != SSN


async def test_a_records_own_practice_wins_over_the_routes(env):
    """A record naming practice-b stays practice-b's on practice-a's route."""
    await env.grant("alice", "practice-a")
    record = {"practice_id": "practice-b", "id": "p2", "medical_history": HISTORY}
    env.portal.script(PATH_A, json.dumps({"entry": [{"resource": record}]}))
    response = await env.get(PATH_A, sub="alice")
    body = json.loads(await response.read())
    assert body["entry"][0]["resource"]["medical_history"] is None  # history's mask: null
    assert HISTORY not in json.dumps(body)


async def test_tokens_are_decided_by_their_own_key_on_a_read_route(env):
    """A practice-b token on practice-a's route opens only for practice-b's grantees."""
    await env.grant("alice", "practice-a")
    await env.grant("bob", "practice-b")
    token = env.keyring.encrypt("practice-b", "ssn", SSN, deterministic=True)
    env.portal.script(PATH_A, json.dumps({"entry": [{"resource": {"ssn": token}}]}))
    assert await _ssn(env, PATH_A, "alice") != SSN
    assert await _ssn(env, PATH_A, "bob") == SSN

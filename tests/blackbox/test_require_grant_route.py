"""`write_routes[].require_grant`: who may have PHI encrypted on a write route.

A deterministic class gives the same token for the same value, so anyone who can have one made
can test a guessed SSN against the portal: by a search, or by comparing with any page that
shows tokens. By default (`deterministic`) those classes need the caller's grant for the
route's practice on every write route; `always` asks for it for every class (search routes),
`never` opens the route to anyone. Real proxy, real portal, real SQLite grants; assertions on
what the portal received.
"""

import json
from datetime import UTC, datetime

import pytest
from blackbox_env import base_config, running_proxy_env

from proxy.settings import config_warnings, load_settings

SSN = "900-55-4321"
SEARCH = "/api/practices/practice-a/patients/search"


@pytest.fixture
async def search_env(tmp_path):
    routes = [
        *base_config("http://unused")["write_routes"],
        {
            "method": "POST",
            "path": "/api/practices/{practice_id}/patients/search",
            "practice_from": {"path_param": "practice_id"},
            "require_grant": True,
        },
    ]
    async with running_proxy_env(tmp_path, overrides={"write_routes": routes}) as env:
        yield env


async def _search(env, sub, body):
    response = await env.get(SEARCH, method="POST", json=body, sub=sub)
    return response.status, json.loads(await response.read())


async def test_caller_with_a_grant_searches_with_a_deterministic_token(search_env):
    await search_env.grant("alice", "practice-a", fields=frozenset({"ssn"}))
    status, _ = await _search(search_env, "alice", {"ssn": SSN})
    assert status == 200
    sent = json.loads(search_env.portal.last().body)
    assert sent["ssn"].startswith("phi1.d.")
    assert search_env.keyring.open(sent["ssn"]).plaintext == SSN


@pytest.mark.parametrize(
    ("sub", "grant"),
    [
        (None, None),  # anonymous
        ("mallory", None),  # no grant at all
        ("bob", ("practice-b", None)),  # a grant for another practice
        ("carol", ("practice-a", frozenset({"history"}))),  # another class at this practice
    ],
)
async def test_caller_without_a_fitting_grant_gets_403_and_nothing_is_forwarded(
    search_env, sub, grant
):
    if grant is not None:
        await search_env.grant(sub, grant[0], fields=grant[1])
    status, body = await _search(search_env, sub, {"ssn": SSN})
    assert status == 403
    assert body["error"] == "request_rejected"
    assert "require_grant" in body["message"]
    assert SSN not in json.dumps(body)
    assert search_env.portal.received == []


async def test_a_revoked_grant_is_refused_on_the_next_request(search_env):
    grant = await search_env.grant("alice", "practice-a")
    assert (await _search(search_env, "alice", {"ssn": SSN}))[0] == 200
    now = datetime.now(UTC)
    await search_env.grants.revoke(grant_id=grant.id, by="tests", reason="left", now=now)
    assert (await _search(search_env, "alice", {"ssn": SSN}))[0] == 403


async def test_a_body_without_phi_needs_no_grant(search_env):
    """Only PHI values are gated: a search by name passes as before."""
    status, _ = await _search(search_env, "mallory", {"name": "Ada"})
    assert status == 200
    assert json.loads(search_env.portal.last().body) == {"name": "Ada"}


@pytest.mark.parametrize("sub", [None, "mallory"], ids=["anonymous", "no-grant"])
async def test_a_stranger_cannot_have_a_deterministic_value_encrypted_on_any_write_route(
    search_env, sub
):
    """The default closes the equality oracle on booking-style routes too: 403, nothing sent."""
    response = await search_env.get(
        "/api/practices/practice-a/patients", method="POST", json={"ssn": SSN}, sub=sub
    )
    body = json.loads(await response.read())
    assert response.status == 403
    assert "deterministically" in body["message"]
    assert SSN not in json.dumps(body)
    assert search_env.portal.received == []


async def test_a_stranger_still_writes_randomized_classes(search_env):
    """A patient booking without a grant still works for classes whose tokens never repeat."""
    response = await search_env.get(
        "/api/practices/practice-a/patients",
        method="POST",
        json={"medical_history": "asthma", "member_id": "M-1"},
        sub="mallory",
    )
    assert response.status == 200
    sent = json.loads(search_env.portal.last().body)
    assert sent["medical_history"].startswith("phi1.r.")
    assert sent["member_id"].startswith("phi1.r.")


async def test_a_grantee_writes_deterministic_values_on_a_booking_route(search_env):
    await search_env.grant("alice", "practice-a", fields=frozenset({"ssn"}))
    response = await search_env.get(
        "/api/bookings", method="POST", json={"practice_id": "practice-a", "ssn": SSN}, sub="alice"
    )
    assert response.status == 200
    sent = json.loads(search_env.portal.last().body)
    assert search_env.keyring.open(sent["ssn"]).plaintext == SSN


async def test_require_grant_never_opens_a_route_to_anyone(tmp_path):
    """The explicit opt-out encrypts for strangers again (and check-config warns about it)."""
    routes = [
        {
            "method": "POST",
            "path": "/api/practices/{practice_id}/patients",
            "practice_from": {"path_param": "practice_id"},
            "require_grant": "never",
        }
    ]
    async with running_proxy_env(tmp_path, overrides={"write_routes": routes}) as env:
        response = await env.get(
            "/api/practices/practice-a/patients", method="POST", json={"ssn": SSN}, sub=None
        )
        assert response.status == 200
        assert json.loads(env.portal.last().body)["ssn"].startswith("phi1.d.")
        warnings = config_warnings(load_settings(env.config_path))
    assert any("require_grant: never" in w and "ssn" in w for w in warnings)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (SEARCH, {"ssn": {SSN: None}}),
        ("/api/practices/practice-a/patients", {"medical_history": {"HIV positive": True}}),
        ("/api/notes", {"medical_history": {"HIV positive": None}}),
    ],
    ids=["gated-search", "create", "unconfigured"],
)
async def test_selected_object_keys_never_reach_the_portal(search_env, path, body):
    """Keys of a selected object are PHI; refused before anything is sent."""
    await search_env.grant("alice", "practice-a")
    response = await search_env.get(path, method="POST", json=body, sub="alice")
    assert response.status == 422
    assert search_env.portal.received == []


async def test_an_empty_value_on_a_gated_route_needs_a_grant_too(search_env):
    """Even an empty SSN would be encrypted deterministically and searched."""
    status, _ = await _search(search_env, "mallory", {"ssn": ""})
    assert status == 403
    assert search_env.portal.received == []

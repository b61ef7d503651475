"""Break-glass end to end: a real proxy, a real portal, real JWTs, SQLite and PostgreSQL stores.

What the caller gets, what the portal receives, what the audit trail and the alert log say,
and what `phi-grants review` lists and signs off.
"""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from blackbox_env import ProxyTestServer, running_proxy_env

from proxy.app import RUNTIME_KEY, build_app
from proxy.grants import GrantRequest
from proxy.runtime import Runtime

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grants"))

from grants_pg import DSN, drop_schema, new_schema, require_postgres, wait_until

from tests.cli_process import run_cli

SSN = "900-12-3456"
MEMBER = "MBR-BG-0007"
HISTORY = "Severe penicillin allergy (synthetic)."
REASON = "unconscious patient in ER, allergy history needed"
HEADER = "X-PHI-Break-Glass"
FLUSH = 0.15  # several audit flush intervals of this config
BREAK_GLASS = {
    "enabled": True,
    "claim": "groups",
    "value": "phi-break-glass",
    "classes": ["ssn", "history"],
    "max_ttl": "1h",
    "max_per_day": 2,
    "signoff_within": "2d",
}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def glass_env(request, tmp_path):
    """A proxy with break_glass on, its grants in SQLite or in a fresh PostgreSQL schema."""
    overrides = {
        "break_glass": dict(BREAK_GLASS),
        "audit": {"flush_interval": 20, "fsync": False},
    }
    schema = None
    if request.param == "postgres":
        await require_postgres()
        schema = new_schema()
        overrides["grants"] = {
            "store": DSN,
            "pg_schema": schema,
            "max_ttl": "90d",
            "timeout_seconds": 5,
        }
    try:
        async with running_proxy_env(tmp_path, overrides=overrides) as env:
            yield env
    finally:
        if schema is not None:
            await drop_schema(schema)


def patient(env, practice="practice-a", pid="p1"):
    return {
        "patient_id": pid,
        "practice_id": practice,
        "ssn": env.encrypt(practice, "ssn", SSN),
        "insurance": {"member_id": env.encrypt(practice, "insurance_id", MEMBER)},
        "medical_history": env.encrypt(practice, "history", HISTORY),
    }


def medic(env, sub="medic", *, groups=("staff", "phi-break-glass")):
    """Authorization for a caller whose token carries the break-glass group."""
    return {"Authorization": f"Bearer {env.token(sub, groups=list(groups))}"}


async def get(env, path, headers):
    response = await env.get(path, headers=headers)
    return response, await response.read()


def requests_in_trail(env):
    lines = (env.folder / "audit.jsonl").read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e["type"] == "request"]


def alert_lines(caplog, name):
    return [r.fields for r in caplog.records if r.name == "phi_proxy.alert" and r.msg == name]


def phi_grants(env, *args):
    """`phi-grants -c CONFIG ARGS` as a real process (this checkout's code)."""
    argv = [sys.executable, "-m", "proxy.grants", "-c", str(env.config_path), *args]
    return run_cli(argv, text=True, timeout=60, check=False)


class TestBreakGlassAccess:
    async def test_claim_and_reason_open_the_configured_classes_audited_and_alerted(
        self, glass_env, caplog
    ):
        """The medic reads SSN and history (not insurance); audited with the flag and reason."""
        env = glass_env
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        response, raw = await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON})
        assert response.status == 200
        body = json.loads(raw)
        assert body["ssn"] == SSN
        assert body["medical_history"] == HISTORY
        assert body["insurance"]["member_id"] == "[redacted]"  # not in break_glass.classes
        [grant] = [g for g in await env.grants.list() if g.subject == env.subject("medic")]
        assert grant.id.startswith("bg_")
        assert grant.practice == "practice-a"
        assert grant.reason == REASON
        assert grant.expires_at - grant.created_at <= timedelta(hours=1)
        await asyncio.sleep(FLUSH)
        [event] = requests_in_trail(env)
        assert event["decrypted"] == {"ssn": 1, "history": 1}
        assert event["break_glass"] == {
            "outcome": "granted",
            "grant_ids": [grant.id],
            "reasons": [REASON],
            "reason": REASON,
            "practice": "practice-a",
        }
        [alert] = alert_lines(caplog, "break_glass_use")
        assert alert["new_grant"] is True
        assert alert["grant_ids"] == [grant.id]
        assert REASON not in json.dumps(alert)  # the reason stays in the trail

    async def test_later_requests_under_the_grant_are_flagged_without_the_header(self, glass_env):
        """Every disclosure through the emergency grant is audited as break-glass."""
        env = glass_env
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        assert (await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON}))[0].status == 200
        _, raw = await get(env, "/api/patients/p1", medic(env))
        assert json.loads(raw)["ssn"] == SSN
        await asyncio.sleep(FLUSH)
        first, second = requests_in_trail(env)
        assert second["break_glass"]["outcome"] == "in_effect"
        assert second["break_glass"]["grant_ids"] == first["break_glass"]["grant_ids"]
        assert second["break_glass"]["reasons"] == [REASON]
        assert len([g for g in await env.grants.list() if g.id.startswith("bg_")]) == 1

    async def test_the_header_never_reaches_the_portal(self, glass_env):
        """Allowed, refused or unauthorized: the portal never sees X-PHI-Break-Glass."""
        env = glass_env
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON})
        await get(env, "/api/patients/p1", env.auth("clerk") | {HEADER: REASON})
        await get(env, "/api/patients/p1", {HEADER: REASON})
        assert len(env.portal.received) == 3
        for received in env.portal.received:
            assert "x-phi-break-glass" not in received.headers
            assert REASON not in json.dumps(received.headers)

    async def test_a_short_reason_is_refused_before_the_portal_is_asked(self, glass_env, caplog):
        """19 characters after trimming: 400, nothing forwarded, nothing granted, audited."""
        env = glass_env
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        response, raw = await get(
            env, "/api/patients/p1", medic(env) | {HEADER: "  too short reason "}
        )
        assert response.status == 400
        error = json.loads(raw)
        assert error["error"] == "break_glass_reason_invalid"
        assert "at least 20" in error["message"]
        assert env.portal.received == []
        assert await env.grants.list() == []
        await asyncio.sleep(FLUSH)
        [event] = requests_in_trail(env)
        assert event["break_glass"]["outcome"] == "refused_reason"
        assert alert_lines(caplog, "break_glass_refused")

    async def test_an_invisible_formatting_character_in_the_reason_is_refused(self, glass_env):
        """A right-to-left override (U+202E) could make a reviewer read another reason: 400."""
        env = glass_env
        sneaky = "routine check \u202edeen ycnegreme"
        response, raw = await get(env, "/api/patients/p1", medic(env) | {HEADER: sneaky})
        assert response.status == 400
        assert json.loads(raw)["error"] == "break_glass_reason_invalid"
        assert env.portal.received == []

    async def test_without_the_claim_the_header_is_ignored_and_alerted(self, glass_env, caplog):
        """A clerk without the group gets masks, no grant, and an alert names the attempt."""
        env = glass_env
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        clerk = {"Authorization": f"Bearer {env.token('clerk', groups=['staff'])}"}
        response, raw = await get(env, "/api/patients/p1", clerk | {HEADER: REASON})
        assert response.status == 200
        body = json.loads(raw)
        assert body["ssn"] == "***-**-3456"
        assert body["medical_history"] is None
        assert b"phi1." not in raw
        assert await env.grants.list() == []
        [alert] = alert_lines(caplog, "break_glass_without_claim")
        assert alert["subject"] == str(env.subject("clerk"))
        await asyncio.sleep(FLUSH)
        [event] = requests_in_trail(env)
        assert event["break_glass"] == {"outcome": "unauthorized", "grant_ids": [], "reasons": []}

    async def test_over_the_daily_limit_is_refused_with_429(self, glass_env, caplog):
        """max_per_day 2: a third practice in 24 hours is refused, masked nothing leaks."""
        env = glass_env
        for practice in ("practice-a", "practice-b", "practice-c"):
            env.portal.script(f"/api/{practice}/p1", orjson.dumps(patient(env, practice)))
        for practice in ("practice-a", "practice-b"):
            response, _ = await get(env, f"/api/{practice}/p1", medic(env) | {HEADER: REASON})
            assert response.status == 200
        response, raw = await get(env, "/api/practice-c/p1", medic(env) | {HEADER: REASON})
        assert response.status == 429
        error = json.loads(raw)
        assert error["error"] == "break_glass_limit_reached"
        assert "max_per_day" in error["message"]
        assert SSN.encode() not in raw
        assert alert_lines(caplog, "break_glass_refused")

    async def test_an_answer_with_several_practices_is_refused(self, glass_env):
        """Break-glass opens one practice: a mixed list is refused (409), nothing granted."""
        env = glass_env
        doc = {"patients": [patient(env, "practice-a", "a1"), patient(env, "practice-b", "b1")]}
        env.portal.script("/api/patients", orjson.dumps(doc))
        response, raw = await get(env, "/api/patients", medic(env) | {HEADER: REASON})
        assert response.status == 409
        assert json.loads(raw)["error"] == "break_glass_several_practices"
        assert SSN.encode() not in raw
        assert await env.grants.list() == []

    async def test_nothing_is_opened_when_nothing_is_withheld(self, glass_env):
        """A caller who already holds a grant gets no emergency grant (and no use to review)."""
        env = glass_env
        await env.grant("medic", "practice-a")
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        _, raw = await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON})
        assert json.loads(raw)["ssn"] == SSN
        assert not [g for g in await env.grants.list() if g.id.startswith("bg_")]


class TestReview:
    async def test_review_lists_the_use_and_acknowledge_signs_it_off(self, glass_env):
        """Review lists the pending use with its reason; --acknowledge signs it off (audited)."""
        env = glass_env
        env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
        await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON})
        [grant] = [g for g in await env.grants.list() if g.id.startswith("bg_")]
        listed = await asyncio.to_thread(phi_grants, env, "review", "--skip-usage")
        assert listed.returncode == 0, listed.stderr
        assert "Break-glass uses awaiting sign-off (1" in listed.stdout
        assert grant.id in listed.stdout
        assert f"reason: {REASON}" in listed.stdout
        as_json = await asyncio.to_thread(phi_grants, env, "review", "--skip-usage", "--json")
        [use] = json.loads(as_json.stdout)["break_glass"]["awaiting_signoff"]
        assert use["id"] == grant.id
        assert use["overdue"] is False
        signed = await asyncio.to_thread(
            phi_grants,
            env,
            "review",
            "--acknowledge",
            grant.id,
            "--by",
            "officer-kim",
            "--note",
            "ER admission confirmed",
        )
        assert signed.returncode == 0, signed.stderr
        assert f"signed off break-glass use {grant.id}" in signed.stdout
        after = await asyncio.to_thread(phi_grants, env, "review", "--skip-usage")
        assert "Break-glass: no use awaits sign-off." in after.stdout
        changes = [
            e
            for e in map(orjson.loads, (env.folder / "audit.jsonl").read_bytes().splitlines())
            if e["type"] == "grant_change" and e["action"] == "break_glass_signoff"
        ]
        assert len(changes) == 1
        assert changes[0]["actor"] == "officer-kim"
        assert changes[0]["details"]["grant_id"] == grant.id
        again = await asyncio.to_thread(
            phi_grants, env, "review", "--acknowledge", grant.id, "--by", "x", "--note", "again"
        )
        assert again.returncode == 1
        assert "already signed off" in again.stderr

    async def test_an_unacknowledged_use_older_than_the_window_is_a_finding(self, glass_env):
        """Past signoff_within (2d): review exits 1 with break_glass_unacknowledged."""
        env = glass_env
        then = datetime.now(UTC) - timedelta(days=3)
        opened = await env.grants.open_break_glass(
            GrantRequest(
                subject=env.subject("medic"),
                practice="practice-a",
                field_classes=frozenset({"ssn"}),
                expires_at=then + timedelta(hours=1),
                created_by="break-glass",
                reason=REASON,
            ),
            now=then,
            max_per_day=2,
        )
        result = await asyncio.to_thread(phi_grants, env, "review", "--skip-usage")
        assert result.returncode == 1
        assert "[break_glass_unacknowledged]" in result.stdout
        assert f"--acknowledge {opened.grant.id}" in result.stdout
        assert "OVERDUE" in result.stdout

    async def test_acknowledge_needs_a_note(self, glass_env):
        """Signing off without saying what was checked is a usage error (exit 2)."""
        result = await asyncio.to_thread(
            phi_grants, glass_env, "review", "--acknowledge", "bg_00", "--by", "officer"
        )
        assert result.returncode == 2
        assert "--note" in result.stderr


@pytest.mark.postgres
async def test_a_grant_opened_on_one_replica_is_seen_by_the_next_request_on_another(tmp_path):
    """Two proxies on one PostgreSQL store: the emergency grant reaches the second at once."""
    await require_postgres()
    schema = new_schema()
    overrides = {
        "break_glass": dict(BREAK_GLASS),
        "audit": {"flush_interval": 20, "fsync": False},
        "grants": {"store": DSN, "pg_schema": schema, "max_ttl": "90d", "timeout_seconds": 5},
    }
    try:
        async with running_proxy_env(tmp_path, overrides=overrides) as env:
            second_app = build_app(Runtime(env.settings))
            second = ProxyTestServer(second_app, host="127.0.0.1")
            await second.start_server()
            env._servers.append(second)
            second_url = str(second.make_url("")).rstrip("/")
            store_b = second_app[RUNTIME_KEY].pipeline().grants
            env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))

            async def via_b(headers):
                async with env.http.get(second_url + "/api/patients/p1", headers=headers) as r:
                    return json.loads(await r.read())

            await via_b(medic(env))  # connects replica B's store and starts its listener
            await wait_until(lambda: store_b.listener.listening, what="replica B's listener")
            assert (await via_b(medic(env)))["ssn"] == "***-**-3456"  # cached: no access
            seen = store_b.changes_seen
            response, _ = await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON})
            assert response.status == 200
            # The insert's NOTIFY reaches replica B, which drops the medic's cached access.
            await wait_until(lambda: store_b.changes_seen > seen, what="the change notification")
            assert (await via_b(medic(env)))["ssn"] == SSN
    finally:
        await drop_schema(schema)


async def test_with_break_glass_off_the_header_is_stripped_and_changes_nothing(proxy_env):
    """The default config: the header never reaches the portal and opens nothing."""
    env = proxy_env
    env.portal.script("/api/patients/p1", orjson.dumps(patient(env)))
    response, raw = await get(env, "/api/patients/p1", medic(env) | {HEADER: REASON})
    assert response.status == 200
    assert json.loads(raw)["ssn"] == "***-**-3456"
    assert "x-phi-break-glass" not in env.portal.last().headers
    assert await env.grants.list() == []

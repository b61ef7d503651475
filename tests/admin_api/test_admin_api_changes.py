"""Grant changes over the admin API, and its read-only answers, against the CLIs.

A change follows the CLI's rules, is audited with the admin's subject and is in effect on the
next proxied request; the review and the report are what the CLIs print.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import orjson
from admin_helpers import ADMIN_SUB
from blackbox_env import break_the_trail, written

from proxy.grants import GrantRequest
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

SSN = "900-66-4321"


def _changes(env) -> list[dict]:
    lines = (env.folder / "audit.jsonl").read_bytes().splitlines()
    return [e for e in map(orjson.loads, lines) if e["type"] == "grant_change"]


def _serve_patient(env):
    record = {"id": 9, "practice_id": "practice-a", "ssn": env.encrypt("practice-a", "ssn", SSN)}
    env.portal.script("/api/patients/9", orjson.dumps(record))


async def _ssn_seen_by(env, sub) -> str:
    response = await env.get("/api/patients/9", sub=sub)
    return orjson.loads(await response.read())["ssn"]


def _cli(tool: str, env, *args: str) -> subprocess.CompletedProcess[str]:
    module = {"phi-grants": "proxy.grants", "phi-audit": "proxy.audit"}[tool]
    return run_cli(
        [sys.executable, "-m", module, "-c", str(env.config_path), *args],
        text=True,
        check=False,
    )


class TestChangesAreAuditedWithTheAdmin:
    async def test_add_revoke_offboard_take_effect_and_name_the_admin(self, admin_env):
        """Each change is in effect on the next request and audited with the admin as actor."""
        env, api = admin_env
        _serve_patient(env)
        nurse = str(env.subject("nurse"))
        admin = str(env.subject(ADMIN_SUB))
        status, added, _ = await api.call(
            "POST",
            "/api/v1/grants",
            {
                "subject": nurse,
                "practice": "practice-a",
                "fields": ["ssn"],
                "ttl": "1d",
                "reason": "night shift cover",
            },
        )
        assert status == 201, added
        assert added["by"] == admin
        [grant] = added["grants"]
        assert (grant["state"], grant["created_by"], grant["fields"]) == ("active", admin, ["ssn"])
        assert await _ssn_seen_by(env, "nurse") == SSN

        status, revoked, _ = await api.call(
            "POST", "/api/v1/grants/revoke", {"grant_id": grant["id"], "reason": "cover ended"}
        )
        assert status == 200, revoked
        assert revoked["grants"][0]["state"] == "revoked"
        assert revoked["grants"][0]["revoked_by"] == admin
        assert await _ssn_seen_by(env, "nurse") == "***-**-4321"

        await env.grant("nurse", "practice-a")
        await env.grant("nurse", "practice-b")
        status, gone, _ = await api.call(
            "POST", "/api/v1/grants/offboard", {"subject": nurse, "reason": "left the practice"}
        )
        assert status == 200, gone
        assert sorted(g["practice"] for g in gone["grants"]) == ["practice-a", "practice-b"]
        assert await _ssn_seen_by(env, "nurse") == "***-**-4321"

        events = _changes(env)
        assert [(e["action"], e["actor"]) for e in events] == [
            ("add", admin),
            ("revoke", admin),
            ("offboard", admin),
        ]
        assert all(e["details"]["via"] == "admin_api" for e in events)
        assert events[0]["details"]["grants"][0]["id"] == grant["id"]
        assert all(e["details"]["admin_request"].startswith("admin-") for e in events)
        assert all(e["details"]["token_id"] for e in events)
        assert "night shift cover" not in (env.folder / "audit.jsonl").read_text()
        verified = _cli("phi-audit", env, "verify")
        assert verified.returncode == 0, verified.stderr

    async def test_the_body_cannot_choose_who_is_audited(self, admin_env):
        """A `by` (or any unknown) field is refused: the actor always comes from the token."""
        env, api = admin_env
        status, body, _ = await api.call(
            "POST",
            "/api/v1/grants",
            {
                "subject": str(env.subject("x")),
                "practice": "practice-a",
                "ttl": "1d",
                "reason": "r",
                "by": "someone-else",
            },
        )
        assert status == 422
        assert body["errors"][0]["where"] == "by"
        assert await env.grants.list() == []


class TestRefusalsMatchTheCli:
    async def test_a_grant_longer_than_max_ttl_is_refused_with_the_store_words(self, admin_env):
        """grants.max_ttl (90d here) refuses over HTTP as at the terminal; nothing is stored."""
        env, api = admin_env
        status, body, _ = await api.call(
            "POST",
            "/api/v1/grants",
            {
                "subject": str(env.subject("x")),
                "practice": "practice-a",
                "ttl": "120d",
                "reason": "too long",
            },
        )
        assert status == 422
        assert body["type"].endswith(":refused")
        assert "max_ttl" in body["detail"]
        assert await env.grants.list() == []
        assert not (env.folder / "audit.jsonl").exists() or _changes(env) == []

    async def test_offboarding_nobody_is_404_saying_why(self, admin_env):
        """An offboard that revokes nothing is not "done": 404, naming the likely typo."""
        env, api = admin_env
        status, body, _ = await api.call(
            "POST", "/api/v1/grants/offboard", {"subject": str(env.subject("typo"))}
        )
        assert status == 404
        assert "has no grant in this store" in body["detail"]

    async def test_revoke_by_subject_needs_the_practice(self, admin_env):
        """Revoking by subject without a practice is refused (offboard is the way to end all)."""
        env, api = admin_env
        await env.grant("nurse", "practice-a")
        status, body, _ = await api.call(
            "POST",
            "/api/v1/grants/revoke",
            {"subject": str(env.subject("nurse")), "reason": "r"},
        )
        assert status == 422
        assert "offboard" in body["detail"]
        assert len(await env.grants.list(subject=env.subject("nurse"))) == 1

    async def test_unknown_or_repeated_query_parameters_are_refused(self, admin_env):
        """A misspelt filter is an error, not a listing of every practice's grants."""
        _env, api = admin_env
        status, body, _ = await api.call("GET", "/api/v1/grants", params={"practise": "x"})
        assert status == 422
        assert body["errors"][0]["where"] == "practise"
        status, body, _ = await api.call("GET", "/api/v1/grants?practice=a&practice=b")
        assert status == 400


class TestFailClosed:
    async def test_a_broken_grant_store_is_503_never_an_empty_list(self, admin_env):
        """A store that cannot be read answers 503 problem+json, not `grants: []`."""
        env, api = admin_env
        await env.grant("nurse", "practice-a")
        env.settings.grants.sqlite_path.write_bytes(b"this is not a database" * 512)
        status, body, headers = await api.call("GET", "/api/v1/grants")
        assert status == 503
        assert headers["Content-Type"].startswith("application/problem+json")
        assert body["type"].endswith(":grant-store-unavailable")

    async def test_a_change_the_trail_cannot_record_is_500_naming_what_changed(
        self, admin_env, caplog
    ):
        """Made, then not audited: the grant IS revoked, the 500 says so, and an alert fires."""
        env, api = admin_env
        grant = await env.grant("nurse", "practice-a")
        await break_the_trail(env)
        body = {"grant_id": grant.id, "reason": "left"}
        status, problem, _ = await api.call("POST", "/api/v1/grants/revoke", body)
        assert status == 500, problem
        assert problem["type"].endswith(":not-audited")
        assert "WAS made" in problem["detail"]
        assert [g["id"] for g in problem["grants"]] == [grant.id]
        assert problem["grants"][0]["state"] == "revoked"
        [alert] = [r for r in caplog.records if r.getMessage() == "admin_change_not_audited"]
        assert alert.fields["via"] == "admin_api"
        assert alert.fields["admin_request"].startswith("admin-")
        [stored] = await env.grants.list(subject=env.subject("nurse"))
        assert stored.revoked_at is not None


class TestReadsMatchTheCli:
    async def test_review_is_the_document_phi_grants_review_prints(self, admin_env):
        """GET /api/v1/review answers the same grants and findings as `phi-grants review --json`."""
        env, api = admin_env
        await env.grant("nurse", "practice-a")
        await env.grant("nurse", "practice-b")
        status, over_http, _ = await api.call("GET", "/api/v1/review")
        assert status == 200
        printed = _cli("phi-grants", env, "review", "--json")
        assert printed.returncode == 1, printed.stderr  # findings: several practices
        from_cli = json.loads(printed.stdout)
        for document in (over_http, from_cli):  # a second apart, maybe
            for grant in document["grants"]:
                del grant["seconds_left"]
        for key in ("grants", "findings", "finding_count", "store", "checks"):
            assert over_http[key] == from_cli[key], key
        assert {f["code"] for f in over_http["findings"]} == {"several_practices"}

    async def test_report_is_the_list_phi_audit_report_prints(self, admin_env):
        """GET /api/v1/audit/report lists the subject's disclosures as `phi-audit report` does."""
        env, api = admin_env
        _serve_patient(env)
        await env.grant("nurse", "practice-a")
        assert await _ssn_seen_by(env, "nurse") == SSN
        assert await _ssn_seen_by(env, "other") != SSN
        await written(env)
        nurse = str(env.subject("nurse"))
        status, report, _ = await api.call("GET", "/api/v1/audit/report", params={"subject": nurse})
        assert status == 200, report
        printed = _cli("phi-audit", env, "report", "--subject", nurse, "--format", "json")
        assert printed.returncode == 0, printed.stderr
        assert report["rows"] == json.loads(printed.stdout)
        assert report["verified"] is True
        assert [(r["record"], r["field_class"]) for r in report["rows"]] == [("9", "ssn")]


class TestEvidenceReadsAreAudited:
    async def test_reading_the_report_is_recorded_with_the_admin_and_filters(self, admin_env):
        """Who looked at who-saw-what, and what they asked for, is itself in the trail."""
        env, api = admin_env
        nurse = str(env.subject("nurse"))
        params = {"subject": nurse, "since": "2026-01-01T00:00:00Z"}
        status, report, _ = await api.call("GET", "/api/v1/audit/report", params=params)
        assert status == 200, report
        await written(env)
        lines = (env.folder / "audit.jsonl").read_bytes().splitlines()
        [read] = [e for e in map(orjson.loads, lines) if e["type"] == "admin_read"]
        assert read["action"] == "audit_report"
        assert read["actor"].endswith(ADMIN_SUB)
        assert read["details"]["filters"] == {
            "subject": nurse,
            "since": "2026-01-01T00:00:00.000Z",
        }
        assert read["details"]["via"] == "admin_api"
        assert read["details"]["admin_request"].startswith("admin-")

    async def test_a_report_read_the_trail_cannot_record_shows_nothing(self, admin_env, caplog):
        """Fail closed: 503 problem, no rows, and an alert, when the read cannot be audited."""
        env, api = admin_env
        _serve_patient(env)
        await env.grant("nurse", "practice-a")
        assert await _ssn_seen_by(env, "nurse") == SSN
        await break_the_trail(env)
        params = {"subject": str(env.subject("nurse"))}
        status, problem, _ = await api.call("GET", "/api/v1/audit/report", params=params)
        assert status == 503, problem
        assert problem["type"].endswith(":read-not-audited")
        assert "rows" not in problem
        assert any(r.getMessage() == "admin_read_not_audited" for r in caplog.records)


class TestBreakGlassSignOff:
    async def _break_glass_use(self, env) -> str:
        """A break-glass use in the proxy's own store, as the proxy opens one (a `bg_` grant)."""
        now = datetime.now(UTC)
        opened = await env.grants.open_break_glass(
            GrantRequest(
                subject=env.subject("er-doc"),
                practice="practice-a",
                field_classes=frozenset({"ssn"}),
                expires_at=now + timedelta(hours=1),
                created_by="break-glass",
                reason="unconscious patient in the ER, allergies needed",
            ),
            now=now,
            max_per_day=3,
        )
        return opened.grant.id

    async def test_an_admin_signs_off_a_use_once_and_it_is_audited_with_the_admin(self, admin_env):
        """The use leaves the review's list; the sign-off event names the admin and the note."""
        env, api = admin_env
        use = await self._break_glass_use(env)
        status, review, _ = await api.call("GET", "/api/v1/review")
        assert status == 200, review
        assert [u["id"] for u in review["break_glass"]["awaiting_signoff"]] == [use]

        path = f"/api/v1/break-glass/{use}/acknowledge"
        status, signed, _ = await api.call("POST", path, {"note": "ER admission 03:12 confirmed"})
        assert status == 200, signed
        admin = str(env.subject(ADMIN_SUB))
        assert (signed["grant_id"], signed["by"], signed["practice"]) == (use, admin, "practice-a")
        assert signed["subject"] == str(env.subject("er-doc"))

        status, again, _ = await api.call("POST", path, {"note": "twice"})
        assert status == 404, again  # final: a second sign-off is refused
        status, review, _ = await api.call("GET", "/api/v1/review")
        assert review["break_glass"]["awaiting_signoff"] == []
        [event] = [e for e in _changes(env) if e["action"] == "break_glass_signoff"]
        assert event["actor"] == admin
        assert event["details"]["grant_id"] == use
        assert event["details"]["note"] == "ER admission 03:12 confirmed"
        assert event["details"]["via"] == "admin_api"
        verified = _cli("phi-audit", env, "verify")
        assert verified.returncode == 0, verified.stderr

    async def test_an_ordinary_grant_or_a_missing_note_is_refused(self, admin_env):
        env, api = admin_env
        await env.grant("nurse", "practice-a")
        [ordinary] = await env.grants.list()
        status, problem, _ = await api.call(
            "POST", f"/api/v1/break-glass/{ordinary.id}/acknowledge", {"note": "not one"}
        )
        assert status in {404, 422}, problem
        use = await self._break_glass_use(env)
        status, problem, _ = await api.call("POST", f"/api/v1/break-glass/{use}/acknowledge", {})
        assert status == 422, problem
        assert [u.id for u in await env.grants.break_glass_uses(pending_only=True)] == [use]

    async def test_a_phi_grantee_cannot_sign_off(self, admin_env):
        env, api = admin_env
        use = await self._break_glass_use(env)
        status, problem, _ = await api.call(
            "POST",
            f"/api/v1/break-glass/{use}/acknowledge",
            {"note": "looks fine"},
            token=env.issuer.mint("er-doc", now=datetime.now(UTC).timestamp()),
        )
        assert status == 403, problem
        assert [u.id for u in await env.grants.break_glass_uses(pending_only=True)] == [use]

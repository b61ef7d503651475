"""The audit trail of a real proxy: what it records, that it verifies, and deny mode."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import blackbox_env as blackbox
import orjson
from audit_helpers import phi_audit, until, written

from tests.cli_process import run_cli_async

if TYPE_CHECKING:
    import subprocess

SSN = "321-54-9876"
MEMBER = "MBR-7781-QQ"
HISTORY = "Asthma since childhood; latex allergy."


def patient(env, practice, pid):
    return {
        "patient_id": pid,
        "practice_id": practice,
        "ssn": env.encrypt(practice, "ssn", f"{SSN}-{pid}"),
        "insurance": {"member_id": env.encrypt(practice, "insurance_id", f"{MEMBER}-{pid}")},
        "medical_history": env.encrypt(practice, "history", f"{HISTORY} ({pid})"),
    }


def serve(env, path, doc):
    env.portal.script(path, orjson.dumps(doc))


def events(env):
    return [orjson.loads(line) for line in (env.folder / "audit.jsonl").read_bytes().splitlines()]


async def _sink_ready(env, *, wanted: bool) -> bool:
    return (await env.runtime.readiness())["audit_sink"] is wanted


def requests_of(env):
    return [e for e in events(env) if e["type"] == "request"]


async def scripted_scenario(env):
    """Current staff, former staff after revocation, and another practice's staff."""
    alice_grant = await env.grant("alice", "practice-a")
    carol_grant = await env.grant("carol", "practice-a")
    await env.grant("bob", "practice-b")
    for pid in ("a1", "a2", "a3"):
        serve(env, f"/api/patients/{pid}", patient(env, "practice-a", pid))
    serve(
        env,
        "/api/patients",
        {"patients": [patient(env, "practice-a", "a4"), patient(env, "practice-b", "b1")]},
    )
    assert (await env.get("/api/patients/a1?q=x", sub="alice")).status == 200
    assert (await env.get("/api/patients/a2", sub="carol")).status == 200
    await env.grants.revoke(
        grant_id=carol_grant.id, by="tests", reason="left", now=datetime.now(UTC)
    )
    assert (await env.get("/api/patients/a3", sub="carol")).status == 200
    assert (await env.get("/api/patients/a1", sub="bob")).status == 200
    assert (await env.get("/api/patients", sub="alice")).status == 200
    await written(env)
    return alice_grant, carol_grant


class TestRequestEvents:
    async def test_each_phi_request_leaves_one_event_with_ids_and_counts(self, audit_env):
        """Decrypting requests record subject, template path, counts, grant ids and records."""
        alice_grant, _ = await scripted_scenario(audit_env)
        alice = str(audit_env.subject("alice"))
        first = requests_of(audit_env)[0]
        assert first["subject"] == alice
        assert first["path"] == "/api/patients/{id}"
        assert first["method"] == "GET"
        assert first["status"] == 200
        assert first["decrypted"] == {"ssn": 1, "insurance_id": 1, "history": 1}
        assert first["grant_ids"] == [alice_grant.id]
        assert first["v"] == 2
        assert first["records"] == [
            {
                "practice": "practice-a",
                "field_classes": ["history", "insurance_id", "ssn"],
                "records": ["a1"],
            }
        ]
        assert first["client"] == "127.0.0.1"
        assert len(first["request_id"]) == 16
        assert first["replica"] == f"{socket.gethostname()}:{os.getpid()}"  # the serving process

    async def test_masked_only_requests_name_no_records(self, audit_env):
        """Bob's and revoked Carol's requests are audited as masked, with no record ids."""
        await scripted_scenario(audit_env)
        masked = [e for e in requests_of(audit_env) if not e["decrypted"]]
        assert len(masked) == 2
        for event in masked:
            assert event["records"] == []
            assert event["grant_ids"] == []
            assert sum(event["masked"].values()) == 3
        carol = next(e for e in masked if e["subject"].endswith("carol"))
        assert carol["lapsed_practices"] == ["practice-a"]

    async def test_access_line_and_event_name_the_same_practices(self, audit_env, caplog):
        """A fully masked read names the practice it withheld in both records, not in one only."""
        serve(audit_env, "/api/patients/m1", patient(audit_env, "practice-a", "m1"))
        response = await audit_env.get("/api/patients/m1", sub="mallory")
        assert response.status == 200
        request_id = response.headers["X-Request-Id"]
        await written(audit_env)
        (event,) = [e for e in requests_of(audit_env) if e["request_id"] == request_id]
        (line,) = [
            r.fields
            for r in caplog.records
            if r.name == "phi_proxy.access" and r.fields["request_id"] == request_id
        ]
        assert event["practices"] == ["practice-a"]
        assert line["practices"] == event["practices"]

    async def test_requests_without_phi_leave_no_event(self, audit_env):
        """A response with no PHI field is not audited (the access log has it)."""
        audit_env.portal.script("/plain", b'{"ok": true}')
        assert (await audit_env.get("/plain", sub="alice")).status == 200
        await written(audit_env)
        assert requests_of(audit_env) == []

    async def test_refused_phi_write_is_audited(self, audit_env):
        """Plaintext PHI sent to a path that is not a write route is refused and audited."""
        response = await audit_env.get(
            "/api/elsewhere/77",
            sub="alice",
            method="POST",
            data=b'{"ssn": "000-12-3456"}',
            headers={"Content-Type": "application/json"},
        )
        blackbox.PLANTED.add("000-12-3456")
        assert response.status >= 400
        await written(audit_env)
        (event,) = requests_of(audit_env)
        assert event["status"] == response.status
        assert event["outcome"] == "request_rejected"
        assert event["path"] == "/api/elsewhere/{id}"

    async def test_encrypting_writes_are_audited_with_the_route_template(self, audit_env):
        """A write route's encrypt counts are recorded under the route's own template."""
        await audit_env.grant("alice", "practice-a")  # staff registering a patient
        body = json.dumps({"patient_id": "n1", "ssn": "111-22-3333"}).encode()
        blackbox.PLANTED.add("111-22-3333")
        response = await audit_env.get(
            "/api/practices/practice-a/patients",
            sub="alice",
            method="POST",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        assert response.status == 200
        await written(audit_env)
        (event,) = requests_of(audit_env)
        assert event["encrypted"] == {"ssn": 1}
        assert event["path"] == "/api/practices/{practice_id}/patients"


class TestVerifyAndReport:
    async def test_the_trail_of_a_real_run_verifies(self, audit_env):
        """phi-audit verify (a subprocess) accepts the trail the proxy wrote."""
        await scripted_scenario(audit_env)
        result = phi_audit("verify", config=audit_env.config_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("OK: ")

    async def test_editing_one_event_fails_verify_naming_the_line(self, audit_env):
        """After one request event is edited, phi-audit verify exits 1 naming file:line."""
        await scripted_scenario(audit_env)
        path = audit_env.folder / "audit.jsonl"
        lines = path.read_bytes().splitlines(keepends=True)
        number = next(i for i, raw in enumerate(lines) if b'"type":"request"' in raw)
        lines[number] = lines[number].replace(b'"status":200', b'"status":404')
        path.write_bytes(b"".join(lines))
        result = phi_audit("verify", config=audit_env.config_path)
        assert result.returncode == 1
        assert f"{path}:{number + 1}:" in result.stderr

    async def test_report_lists_exactly_the_decrypted_records(self, audit_env):
        """The breach list names a1 and a4 for Alice and a2 for Carol; nothing masked."""
        await scripted_scenario(audit_env)
        result = phi_audit("report", "--format", "json", config=audit_env.config_path)
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        seen = {(r["subject"].split("|")[-1], r["practice"], r["record"]) for r in rows}
        assert seen == {
            ("alice", "practice-a", "a1"),
            ("alice", "practice-a", "a4"),
            ("carol", "practice-a", "a2"),
        }
        assert {r["field_class"] for r in rows} == {"ssn", "insurance_id", "history"}
        assert all(r["count"] == 1 for r in rows)

    async def test_report_filters_by_subject_and_formats(self, audit_env):
        """--subject narrows to one person; csv and table formats render the same rows."""
        await scripted_scenario(audit_env)
        carol = str(audit_env.subject("carol"))
        csv_out = phi_audit(
            "report", "--subject", carol, "--format", "csv", config=audit_env.config_path
        )
        assert csv_out.returncode == 0, csv_out.stderr
        lines = csv_out.stdout.strip().splitlines()
        assert lines[0].startswith("subject,practice,record,field_class,count")
        assert len(lines) == 4
        assert all(",a2," in line for line in lines[1:])
        table = phi_audit("report", "--record", "a4", config=audit_env.config_path)
        assert "1 record(s) disclosed to 1 subject(s) in 3 disclosure(s)" in table.stdout


class TestAlerts:
    async def test_lapsed_grant_and_masked_burst_raise_alerts(self, audit_env, caplog):
        """Revoked Carol's attempt and Bob's burst of masked responses each page the SIEM."""
        await scripted_scenario(audit_env)
        for _ in range(2):
            await audit_env.get("/api/patients/a1", sub="bob")
        alerts = [r for r in caplog.records if r.name == "phi_proxy.alert"]
        lapsed = [r for r in alerts if r.getMessage() == "lapsed_grant_use"]
        assert len(lapsed) == 1
        assert lapsed[0].fields["practices"] == ["practice-a"]
        assert lapsed[0].fields["subject"].endswith("carol")
        bursts = [r for r in alerts if r.getMessage() == "masked_burst"]
        assert len(bursts) == 1
        assert bursts[0].fields["subject"].endswith("bob")


class TestDenyMode:
    async def test_unwritable_sink_masks_everything_until_it_recovers(self, audit_env):
        """With the audit file replaced by a folder, even Alice is masked; then it recovers."""
        await audit_env.grant("alice", "practice-a")
        serve(audit_env, "/api/patients/a1", patient(audit_env, "practice-a", "a1"))
        ok = json.loads(await (await audit_env.get("/api/patients/a1", sub="alice")).read())
        assert ok["ssn"] == f"{SSN}-a1"
        await written(audit_env)
        path = audit_env.folder / "audit.jsonl"
        path.rename(path.with_name("audit.jsonl.1"))
        path.mkdir()
        await until(
            lambda: _sink_ready(audit_env, wanted=False),
            what="the sink to fail",
        )
        assert (await audit_env.runtime.readiness())["audit_sink"] is False
        denied = json.loads(await (await audit_env.get("/api/patients/a1", sub="alice")).read())
        assert denied["ssn"].startswith("***-**-")
        assert f"{SSN}-a1" not in json.dumps(denied)
        assert denied["medical_history"] is None
        shutil.rmtree(path)
        await until(
            lambda: _sink_ready(audit_env, wanted=True),
            what="the queued events written",
        )
        assert (await audit_env.runtime.readiness())["audit_sink"] is True
        again = json.loads(await (await audit_env.get("/api/patients/a1", sub="alice")).read())
        assert again["ssn"] == f"{SSN}-a1"
        await written(audit_env)
        result = phi_audit("verify", config=audit_env.config_path)
        assert result.returncode == 0, result.stderr
        flags = [e["audit_denied"] for e in requests_of(audit_env)]
        assert flags == [True, False]  # the denied request's event was kept and written


async def run_module(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m ARGV…` as a real process without blocking the proxy's event loop."""
    return await run_cli_async([sys.executable, "-m", *argv], text=True, timeout=60)


class TestChangeEvents:
    async def test_grant_and_key_commands_append_to_the_same_chain(self, audit_env):
        """phi-grants add/revoke and phi-keys add-practice, run as processes, are audited."""
        config = str(audit_env.config_path)
        subject = str(audit_env.subject("dana"))
        grant = ["proxy.grants", "-c", config]
        added = await run_module(
            *grant, "add", "--subject", subject, "--practice", "practice-a", "--ttl", "1d",
            "--reason", "covering", "--by", "admin",
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        grant_id = added.stdout.split()[1]
        revoked = await run_module(
            *grant, "revoke", "--id", grant_id, "--reason", "done", "--by", "admin"
        )
        assert revoked.returncode == 0, revoked.stderr
        keys = await run_module("keys", "-c", config, "add-practice", "practice-d")
        assert keys.returncode == 0, keys.stderr
        await written(audit_env)
        changes = [e for e in events(audit_env) if e["type"] in {"grant_change", "key_change"}]
        assert [(e["type"], e["action"]) for e in changes] == [
            ("grant_change", "add"),
            ("grant_change", "revoke"),
            ("key_change", "add-practice"),
        ]
        assert changes[0]["actor"] == "admin"
        assert changes[0]["details"]["grants"][0]["subject"] == subject
        assert changes[1]["details"]["grants"][0]["id"] == grant_id
        assert "covering" not in json.dumps(changes[0])
        assert changes[2]["details"] == {"practices": ["practice-d"]}
        result = await asyncio.to_thread(phi_audit, "verify", config=audit_env.config_path)
        assert result.returncode == 0, result.stderr

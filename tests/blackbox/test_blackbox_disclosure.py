"""Who sees what: the core rule, end to end through a real proxy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import orjson

SSN = "123-45-6789"
MEMBER = "MBR-0042-XYZ"
HISTORY = "Type 2 diabetes since 2019; penicillin allergy."


def patient(env, practice, *, pid="p1", ssn=SSN, member=MEMBER, history=HISTORY):
    return {
        "patient_id": pid,
        "practice_id": practice,
        "name": "Pat Example",
        "ssn": env.encrypt(practice, "ssn", ssn),
        "insurance": {"member_id": env.encrypt(practice, "insurance_id", member)},
        "medical_history": env.encrypt(practice, "history", history),
    }


def serve_json(env, path, doc, **kw):
    env.portal.script(path, orjson.dumps(doc), **kw)


class TestWhoSeesPlaintext:
    async def test_authorized_caller_sees_plaintext(self, proxy_env):
        """A caller with an active grant for the owning practice gets every field decrypted."""
        await proxy_env.grant("alice", "practice-a")
        serve_json(proxy_env, "/api/patients/p1", patient(proxy_env, "practice-a"))
        response = await proxy_env.get("/api/patients/p1", sub="alice")
        body = json.loads(await response.read())
        assert response.status == 200
        assert body["ssn"] == SSN
        assert body["insurance"]["member_id"] == MEMBER
        assert body["medical_history"] == HISTORY
        assert response.headers["Cache-Control"] == "no-store"
        assert "Authorization" in response.headers["Vary"]

    async def test_callers_without_a_fitting_grant_see_masks(self, proxy_env):
        """Other practice, anonymous, revoked, expired, not yet valid, wrong class: all masked."""
        now = datetime.now(UTC)
        await proxy_env.grant("bob-other-practice", "practice-b")
        revoked = await proxy_env.grant("carol-revoked", "practice-a")
        await proxy_env.grants.revoke(grant_id=revoked.id, by="tests", reason="left", now=now)
        await proxy_env.grant("dave-expired", "practice-a", expires_in=timedelta(seconds=1))
        await proxy_env.grant("erin-future", "practice-a", not_before=now + timedelta(hours=1))
        await proxy_env.grant("frank-history-only", "practice-a", fields=frozenset({"history"}))
        serve_json(proxy_env, "/api/patients/p1", patient(proxy_env, "practice-a"))
        # Let dave's one-second grant run out.
        import asyncio

        await asyncio.sleep(1.1)
        for sub in (None, "bob-other-practice", "carol-revoked", "dave-expired", "erin-future"):
            response = await proxy_env.get("/api/patients/p1", sub=sub)
            raw = await response.read()
            body = json.loads(raw)
            assert response.status == 200, sub
            assert body["ssn"] == "***-**-6789", sub
            assert body["insurance"]["member_id"] == "[redacted]", sub
            assert body["medical_history"] is None, sub
            assert b"phi1." not in raw, sub
        response = await proxy_env.get("/api/patients/p1", sub="frank-history-only")
        partial = json.loads(await response.read())
        assert partial["medical_history"] == HISTORY
        assert partial["ssn"] == "***-**-6789"
        assert partial["insurance"]["member_id"] == "[redacted]"

    async def test_mixed_practice_list_is_decided_per_record(self, proxy_env):
        """In one list of three practices' patients, only the granted practice's PHI shows."""
        await proxy_env.grant("alice", "practice-b")
        doc = {
            "patients": [
                patient(proxy_env, "practice-a", pid="a1", ssn="111-11-1111"),
                patient(proxy_env, "practice-b", pid="b1", ssn="222-22-2222"),
                patient(proxy_env, "practice-c", pid="c1", ssn="333-33-3333"),
            ]
        }
        serve_json(proxy_env, "/api/patients", doc)
        body = json.loads(await (await proxy_env.get("/api/patients", sub="alice")).read())
        ssns = [p["ssn"] for p in body["patients"]]
        assert ssns == ["***-**-1111", "222-22-2222", "***-**-3333"]

    async def test_token_copied_into_another_practices_record_follows_its_key(self, proxy_env):
        """A practice-A token inside a practice-B record is decided by A's grant, not B's."""
        await proxy_env.grant("bstaff", "practice-b")
        await proxy_env.grant("astaff", "practice-a")
        record = patient(proxy_env, "practice-b")
        record["ssn"] = proxy_env.encrypt("practice-a", "ssn", "999-99-9999")
        serve_json(proxy_env, "/api/practices/practice-b/patients/p1", record)
        path = "/api/practices/practice-b/patients/p1"
        as_b = json.loads(await (await proxy_env.get(path, sub="bstaff")).read())
        as_a = json.loads(await (await proxy_env.get(path, sub="astaff")).read())
        assert as_b["ssn"] == "***-**-9999"
        assert as_a["ssn"] == "999-99-9999"

    async def test_plaintext_legacy_field_needs_a_grant_for_the_records_practice(self, proxy_env):
        """A not-yet-encrypted value is kept only for a grant holder of the record's practice."""
        await proxy_env.grant("alice", "practice-a")
        legacy = {"patient_id": "p9", "practice_id": "practice-a", "ssn": "555-55-5555"}
        serve_json(proxy_env, "/api/legacy/p9", legacy)
        granted = json.loads(await (await proxy_env.get("/api/legacy/p9", sub="alice")).read())
        anonymous = json.loads(await (await proxy_env.get("/api/legacy/p9")).read())
        assert granted["ssn"] == "555-55-5555"
        assert anonymous["ssn"] == "***-**-5555"
        no_practice = {"patient_id": "p9", "ssn": "555-55-5555"}
        serve_json(proxy_env, "/api/legacy/unknown", no_practice)
        unknown = json.loads(await (await proxy_env.get("/api/legacy/unknown", sub="alice")).read())
        assert unknown["ssn"] == "***-**-5555"

    async def test_tampered_token_is_masked_even_for_the_owner(self, proxy_env):
        """A token whose ciphertext was altered is masked for everyone and never leaks."""
        await proxy_env.grant("alice", "practice-a")
        token = proxy_env.encrypt("practice-a", "insurance_id", MEMBER)
        flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        serve_json(proxy_env, "/api/tampered", {"practice_id": "practice-a", "member_id": flipped})
        response = await proxy_env.get("/api/tampered", sub="alice")
        raw = await response.read()
        assert json.loads(raw)["member_id"] == "[redacted]"
        assert b"phi1." not in raw

    async def test_revocation_applies_on_the_next_request(self, proxy_env):
        """After revoke returns, the very next request through the proxy is masked."""
        grant = await proxy_env.grant("alice", "practice-a")
        serve_json(proxy_env, "/api/patients/p1", patient(proxy_env, "practice-a"))
        before = json.loads(await (await proxy_env.get("/api/patients/p1", sub="alice")).read())
        assert before["ssn"] == SSN
        await proxy_env.grants.revoke(
            grant_id=grant.id, by="tests", reason="offboarded", now=datetime.now(UTC)
        )
        after = json.loads(await (await proxy_env.get("/api/patients/p1", sub="alice")).read())
        assert after["ssn"] == "***-**-6789"


class TestTokensAnywhere:
    async def test_token_in_an_unselected_field_is_still_decided(self, proxy_env):
        """A token under a key nobody configured is decrypted-or-masked like any other."""
        await proxy_env.grant("alice", "practice-a")
        doc = {"notes": proxy_env.encrypt("practice-a", "history", "note text 77")}
        serve_json(proxy_env, "/api/notes", doc)
        granted = await (await proxy_env.get("/api/notes", sub="alice")).read()
        masked = await (await proxy_env.get("/api/notes")).read()
        assert json.loads(granted)["notes"] == "note text 77"
        assert b"note text 77" not in masked
        assert b"phi1." not in masked

    async def test_tokens_in_csv_and_html_bodies(self, proxy_env):
        """CSV and HTML bodies have every token replaced in place, with the rest untouched."""
        await proxy_env.grant("alice", "practice-a")
        token = proxy_env.encrypt("practice-a", "ssn", SSN)
        csv_body = f"patient_id,ssn\np1,{token}\n"
        html_body = f"<html><body><td>{token}</td></body></html>"
        proxy_env.portal.script("/export.csv", csv_body, content_type="text/csv")
        proxy_env.portal.script("/page", html_body, content_type="text/html; charset=utf-8")
        assert (await (await proxy_env.get("/export.csv", sub="alice")).read()).decode() == (
            f"patient_id,ssn\np1,{SSN}\n"
        )
        masked_csv = (await (await proxy_env.get("/export.csv")).read()).decode()
        assert masked_csv.startswith("patient_id,ssn\np1,")
        assert SSN not in masked_csv
        assert "phi1." not in masked_csv
        masked_html = (await (await proxy_env.get("/page")).read()).decode()
        assert masked_html.startswith("<html><body><td>")
        assert SSN not in masked_html
        assert "phi1." not in masked_html

    async def test_upstream_error_body_is_transformed_too(self, proxy_env):
        """A 500 whose JSON error echoes PHI is masked exactly like a success body."""
        doc = {"error": "db failure", "row": patient(proxy_env, "practice-a")}
        serve_json(proxy_env, "/api/broken", doc, status=500)
        response = await proxy_env.get("/api/broken")
        raw = await response.read()
        assert response.status == 500
        assert b"phi1." not in raw
        assert SSN.encode() not in raw
        assert json.loads(raw)["row"]["ssn"] == "***-**-6789"

    async def test_key_name_variants_are_selected(self, proxy_env):
        """Escaped, upper-case, mixed-case and full-width spellings of `ssn` are all selected."""
        raw_doc = (
            b'[{"\\u0073sn": "111-22-3333"}, {"SSN": "111-22-3333"}, {"Ssn": "111-22-3333"},'
            + '{"\uff33\uff33\uff2e": "111-22-3333"}]'.encode()
        )
        planted_value = "111-22-3333"
        proxy_env.portal.script("/api/variants", raw_doc)
        raw = await (await proxy_env.get("/api/variants")).read()
        assert planted_value.encode() not in raw
        assert raw.count(b"***-**-3333") == 4

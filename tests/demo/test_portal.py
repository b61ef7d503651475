"""The demo portal (deliberately naive) and the demo's generated workspace, in-process."""

from __future__ import annotations

import stat

import pytest
from aiohttp.test_utils import TestClient, TestServer

from proxy.demo.data import PRACTICES, STAFF, bookings, patients
from proxy.demo.portal import build_portal_app
from proxy.demo.story import STEPS, render_story
from proxy.demo.workspace import DemoPorts, create_workspace

NEW = {
    "name": "Test Person",
    "date_of_birth": "token-dob",
    "ssn": "token-ssn",
    "insurance": {"carrier": "Plan", "member_id": "token-member"},
    "medical_history": "token-history",
}


@pytest.fixture
async def portal(tmp_path):
    client = TestClient(TestServer(build_portal_app(tmp_path / "portal.sqlite3")))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


class TestSyntheticData:
    def test_every_ssn_is_in_the_never_issued_9xx_range(self):
        """Synthetic SSNs all start with 9 (never issued) and are distinct."""
        ssns = [p.ssn for p in patients()]
        assert all(s.startswith("9") for s in ssns)
        assert len(set(ssns)) == len(ssns) == 12

    def test_six_patients_per_practice_and_bookings_point_at_their_practice(self):
        """Two practices with six patients each; every booking's patient is of its practice."""
        people = patients()
        for practice in PRACTICES:
            assert sum(p.practice == practice.id for p in people) == 6
        for booking in bookings():
            assert people[booking.patient - 1].practice == booking.practice


class TestNaivePortal:
    async def test_stores_what_it_is_sent_and_lists_by_practice(self, portal):
        """Create returns 201 and the stored values verbatim; the list is per practice."""
        created = await portal.post("/api/practices/practice-a/patients", json=NEW)
        assert created.status == 201
        body = await created.json()
        assert body["ssn"] == "token-ssn"
        assert body["insurance"]["member_id"] == "token-member"
        listed = await (await portal.get("/api/practices/practice-a/patients")).json()
        assert [p["name"] for p in listed["patients"]] == ["Test Person"]
        other = await (await portal.get("/api/practices/practice-b/patients")).json()
        assert other["patients"] == []

    async def test_detail_has_the_deliberate_idor_bug(self, portal):
        """Detail ignores the URL's practice and even echoes it as the record's practice."""
        await portal.post("/api/practices/practice-a/patients", json=NEW)
        response = await portal.get("/api/practices/practice-b/patients/1")
        body = await response.json()
        assert response.status == 200
        assert body["practice_id"] == "practice-b"
        assert body["medical_history"] == "token-history"
        assert (await portal.get("/api/practices/practice-a/patients/99")).status == 404

    async def test_search_matches_by_exact_value_within_the_practice(self, portal):
        """Search finds the patient whose stored SSN equals the one sent, in that practice only."""
        await portal.post("/api/practices/practice-a/patients", json=NEW)
        url = "/api/practices/{}/patients/search"
        hit = await (await portal.post(url.format("practice-a"), json={"ssn": "token-ssn"})).json()
        assert [p["id"] for p in hit["patients"]] == [1]
        miss = await (await portal.post(url.format("practice-b"), json={"ssn": "token-ssn"})).json()
        assert miss["patients"] == []
        assert (await portal.post(url.format("practice-a"), json={})).status == 400

    async def test_bookings_csv_and_staff(self, portal):
        """Bookings need a patient of that practice; the CSV and staff list read the same DB."""
        await portal.post("/api/practices/practice-a/patients", json=NEW)
        booking = {
            "practice_id": "practice-a",
            "patient_id": 1,
            "starts_at": "2026-12-01T09:00:00",
            "provider": "Dr. Test",
            "visit_reason": "token-reason",
        }
        assert (await portal.post("/api/bookings", json=booking)).status == 201
        wrong = {**booking, "practice_id": "practice-b"}
        assert (await portal.post("/api/bookings", json=wrong)).status == 400
        visits = await (await portal.get("/api/practices/practice-a/appointments")).json()
        assert visits["appointments"][0]["visit_reason"] == "token-reason"
        csv = await (await portal.get("/api/practices/practice-a/export.csv")).text()
        assert csv.splitlines()[1].split(",")[3] == "token-ssn"
        staff = await (await portal.get("/api/practices/practice-a/staff")).json()
        assert [s["sub"] for s in staff["staff"]] == ["alice", "mallory"]


class TestWorkspace:
    def test_creates_private_keys_and_a_valid_config(self, tmp_path):
        """KEK mode 0600, keystore with both practices, config pointing at the given ports."""
        workspace = create_workspace(tmp_path, DemoPorts(proxy=1111, portal=2222, admin=3333))
        assert stat.S_IMODE((tmp_path / "kek.b64").stat().st_mode) == 0o600
        assert workspace.settings.listen.port == 1111
        assert str(workspace.settings.upstream.url) == "http://127.0.0.1:2222/"
        assert workspace.settings.admin.port == 3333
        classes = workspace.settings.fields.classes
        assert classes["ssn"].deterministic is True
        routes = {(r.method, r.path) for r in workspace.settings.write_routes.root}
        assert ("POST", "/api/practices/{practice_id}/patients/search") in routes

    def test_story_names_everyone_and_holds_no_plaintext_phi(self, tmp_path):
        """The printed story lists each person and command, and no synthetic PHI value."""
        from datetime import UTC, datetime

        workspace = create_workspace(tmp_path, DemoPorts())
        text = render_story(
            workspace=workspace,
            ports=DemoPorts(),
            tokens={s.sub: f"token-of-{s.sub}" for s in STAFF},
            token_hours=4,
            grants_expire=datetime(2030, 1, 1, tzinfo=UTC),
            seeded=(12, 4),
        )
        for person in STAFF:
            assert f"export {person.sub.upper()}=token-of-{person.sub}" in text
        for step in STEPS:
            assert step.command in text
        for patient in patients():
            assert patient.member_id not in text
            assert patient.medical_history not in text

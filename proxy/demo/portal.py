"""The demo's "legacy practice portal": aiohttp + stdlib sqlite3. Demo only, not production.

It is deliberately naive, like the portal in the incident: it trusts whoever reaches it (no
login, no per-practice check), and patient detail looks a patient up by id alone while echoing
the practice from the URL, so practice-b's URL happily returns practice-a's patient. It stores
whatever it is sent, so behind phi-proxy its database holds only ciphertext tokens, and it finds
patients by SSN by comparing tokens (the proxy encrypts SSNs deterministically).

Endpoints (JSON unless noted):
    GET  /api/practices
    GET  /api/practices/{practice_id}/staff
    GET  /api/practices/{practice_id}/patients
    POST /api/practices/{practice_id}/patients          create (PHI in the body)
    GET  /api/practices/{practice_id}/patients/{id}     detail: insurance, history, visits
    POST /api/practices/{practice_id}/patients/search   {"ssn": ...}
    GET  /api/practices/{practice_id}/appointments
    GET  /api/practices/{practice_id}/export.csv        text/csv
    POST /api/bookings                                  {"practice_id": ..., PHI inside}
"""

from __future__ import annotations

import csv
import io
import sqlite3
from typing import TYPE_CHECKING, Any

from aiohttp import web

from proxy.demo.data import PRACTICES, STAFF

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DB_KEY", "PortalDb", "build_portal_app"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS practices (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS staff (
    sub TEXT PRIMARY KEY, name TEXT NOT NULL, practice_id TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1  -- nobody ever sets this to 0: that was the incident
);
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY AUTOINCREMENT, practice_id TEXT NOT NULL, name TEXT NOT NULL,
    date_of_birth TEXT NOT NULL, ssn TEXT NOT NULL, carrier TEXT NOT NULL,
    member_id TEXT NOT NULL, medical_history TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS patients_by_ssn ON patients (practice_id, ssn);
CREATE TABLE IF NOT EXISTS appointments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, practice_id TEXT NOT NULL,
    patient_id INTEGER NOT NULL, starts_at TEXT NOT NULL, provider TEXT NOT NULL,
    visit_reason TEXT NOT NULL
);
"""
_PATIENT_TEXT = ("name", "date_of_birth", "ssn", "medical_history")
_BOOKING_TEXT = ("practice_id", "starts_at", "provider", "visit_reason")


class PortalDb:
    """The portal's SQLite file; used from the event loop thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(path)
        self._conn.row_factory = sqlite3.Row
        self._conn.executescript(_SCHEMA)
        with self._conn:
            self._conn.executemany(
                "INSERT OR IGNORE INTO practices (id, name) VALUES (?, ?)",
                [(p.id, p.name) for p in PRACTICES],
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO staff (sub, name, practice_id) VALUES (?, ?, ?)",
                [(s.sub, s.name, s.practice) for s in STAFF],
            )

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()

    def rows(self, sql: str, *args: object) -> list[dict[str, Any]]:
        """Run a query; each row as a dict."""
        return [dict(row) for row in self._conn.execute(sql, args)]

    def insert(self, sql: str, *args: object) -> int:
        """Run an INSERT in its own transaction; the new row id."""
        with self._conn:
            cursor = self._conn.execute(sql, args)
        return int(cursor.lastrowid or 0)


DB_KEY = web.AppKey("demo_portal_db", PortalDb)


def _patient_summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "practice_id": row["practice_id"],
        "name": row["name"],
        "date_of_birth": row["date_of_birth"],
        "ssn": row["ssn"],
    }


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="expected a JSON object") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise web.HTTPBadRequest(text=f"{key} is required")
    return value


async def _practices(request: web.Request) -> web.Response:
    rows = request.app[DB_KEY].rows("SELECT id, name FROM practices ORDER BY id")
    return web.json_response({"practices": rows})


async def _staff(request: web.Request) -> web.Response:
    practice = request.match_info["practice_id"]
    rows = request.app[DB_KEY].rows(
        "SELECT sub, name, active FROM staff WHERE practice_id = ? ORDER BY sub", practice
    )
    return web.json_response({"practice_id": practice, "staff": rows})


async def _list_patients(request: web.Request) -> web.Response:
    practice = request.match_info["practice_id"]
    rows = request.app[DB_KEY].rows(
        "SELECT * FROM patients WHERE practice_id = ? ORDER BY id", practice
    )
    return web.json_response(
        {"practice_id": practice, "patients": [_patient_summary(r) for r in rows]}
    )


def _detail(db: PortalDb, row: dict[str, Any], claimed_practice: str) -> dict[str, Any]:
    visits = db.rows(
        "SELECT id, starts_at, provider, visit_reason FROM appointments "
        "WHERE patient_id = ? ORDER BY starts_at",
        row["id"],
    )
    return {
        **_patient_summary(row),
        "practice_id": claimed_practice,  # BUG (deliberate): echoes the URL, not the record
        "insurance": {"carrier": row["carrier"], "member_id": row["member_id"]},
        "medical_history": row["medical_history"],
        "appointments": visits,
    }


async def _patient(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    try:
        patient_id = int(request.match_info["patient_id"])
    except ValueError:
        raise web.HTTPNotFound from None
    # BUG (deliberate, the classic IDOR): looked up by id alone, whatever practice is in the URL.
    rows = db.rows("SELECT * FROM patients WHERE id = ?", patient_id)
    if not rows:
        raise web.HTTPNotFound
    return web.json_response(_detail(db, rows[0], request.match_info["practice_id"]))


async def _create_patient(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    practice = request.match_info["practice_id"]
    body = await _json_object(request)
    insurance = body.get("insurance")
    if not isinstance(insurance, dict):
        raise web.HTTPBadRequest(text="insurance is required")
    values = [_text(body, key) for key in _PATIENT_TEXT]
    new_id = db.insert(
        "INSERT INTO patients (practice_id, name, date_of_birth, ssn, medical_history, "
        "carrier, member_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
        practice,
        *values,
        _text(insurance, "carrier"),
        _text(insurance, "member_id"),
    )
    row = db.rows("SELECT * FROM patients WHERE id = ?", new_id)[0]
    return web.json_response(_detail(db, row, practice), status=201)


async def _search(request: web.Request) -> web.Response:
    practice = request.match_info["practice_id"]
    ssn = _text(await _json_object(request), "ssn")
    # Equality on ciphertext works because the proxy encrypts SSNs deterministically (AES-SIV).
    rows = request.app[DB_KEY].rows(
        "SELECT * FROM patients WHERE practice_id = ? AND ssn = ? ORDER BY id", practice, ssn
    )
    return web.json_response(
        {"practice_id": practice, "patients": [_patient_summary(r) for r in rows]}
    )


async def _appointments(request: web.Request) -> web.Response:
    practice = request.match_info["practice_id"]
    rows = request.app[DB_KEY].rows(
        "SELECT a.id, a.patient_id, p.name AS patient_name, a.starts_at, a.provider, "
        "a.visit_reason FROM appointments a JOIN patients p ON p.id = a.patient_id "
        "WHERE a.practice_id = ? ORDER BY a.starts_at",
        practice,
    )
    return web.json_response({"practice_id": practice, "appointments": rows})


async def _book(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    body = await _json_object(request)
    practice, starts_at, provider, reason = (_text(body, key) for key in _BOOKING_TEXT)
    patient_id = body.get("patient_id")
    if not isinstance(patient_id, int) or not db.rows(
        "SELECT id FROM patients WHERE id = ? AND practice_id = ?", patient_id, practice
    ):
        raise web.HTTPBadRequest(text="patient_id must name a patient of that practice")
    new_id = db.insert(
        "INSERT INTO appointments (practice_id, patient_id, starts_at, provider, visit_reason) "
        "VALUES (?, ?, ?, ?, ?)",
        practice,
        patient_id,
        starts_at,
        provider,
        reason,
    )
    return web.json_response(
        {"id": new_id, "practice_id": practice, "patient_id": patient_id, "starts_at": starts_at},
        status=201,
    )


async def _export(request: web.Request) -> web.Response:
    practice = request.match_info["practice_id"]
    rows = request.app[DB_KEY].rows(
        "SELECT * FROM patients WHERE practice_id = ? ORDER BY id", practice
    )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = ("id", "name", "date_of_birth", "ssn", "carrier", "member_id", "medical_history")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row[c] for c in columns])
    return web.Response(text=out.getvalue(), content_type="text/csv")


def build_portal_app(db_path: Path) -> web.Application:
    """The portal application over the SQLite file at `db_path` (created if missing)."""
    app = web.Application()
    db = PortalDb(db_path)
    app[DB_KEY] = db

    async def close_db(_app: web.Application) -> None:
        db.close()

    app.on_cleanup.append(close_db)
    base = "/api/practices/{practice_id}"
    app.router.add_get("/api/practices", _practices)
    app.router.add_get(f"{base}/staff", _staff)
    app.router.add_get(f"{base}/patients", _list_patients)
    app.router.add_post(f"{base}/patients", _create_patient)
    app.router.add_post(f"{base}/patients/search", _search)
    app.router.add_get(f"{base}/patients/{{patient_id}}", _patient)
    app.router.add_get(f"{base}/appointments", _appointments)
    app.router.add_get(f"{base}/export.csv", _export)
    app.router.add_post("/api/bookings", _book)
    return app

"""`phi-keys encrypt-existing` on a portal's plaintext table, then reads through the proxy."""

from __future__ import annotations

import sqlite3

from lifecycle_helpers import run_keys

from keys.token_format import TOKEN_PATTERN

ROWS = {
    "p1": ("practice-a", "123-45-6789", "MBR-1", "asthma since 2003"),
    "p2": ("practice-b", "987-65-4321", "MBR-2", "penicillin allergy"),
    "p3": ("practice-a", "555-12-0000", None, ""),
}


class TestEncryptExistingThroughProxy:
    async def test_authorized_caller_reads_the_same_values(self, live):
        """After the migration the DB holds tokens and the granted caller sees the originals."""
        with sqlite3.connect(live.db) as conn:
            conn.executemany(
                "INSERT INTO patients VALUES (?, ?, ?, ?, ?)",
                [(pid, *values) for pid, values in ROWS.items()],
            )
        done = run_keys(
            "encrypt-existing",
            "--dsn",
            f"sqlite:///{live.db}",
            "--table",
            "patients",
            "--key",
            "id",
            "--practice-column",
            "practice_id",
            "--columns",
            "ssn:ssn,member_id:insurance_id,history:history",
            config=live.config,
        )
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(live.db) as conn:
            stored = conn.execute("SELECT ssn, member_id, history FROM patients").fetchall()
        flat = [v for row in stored for v in row if v is not None]
        assert len(flat) == 8
        assert all(TOKEN_PATTERN.fullmatch(v) for v in flat), "no plaintext left"
        for secret in ("123-45-6789", "asthma since 2003", "MBR-2"):
            assert secret not in done.stdout + done.stderr, "the CLI never prints values"
        for pid, (_practice, ssn, member, history) in ROWS.items():
            status, body = await live.get_patient(pid)
            assert status == 200
            assert (body["ssn"], body["member_id"], body["medical_history"]) == (
                ssn,
                member,
                history,
            )
        status, body = await live.get_patient("p1", sub="mallory")
        assert status == 200
        assert body["ssn"] == "***-**-6789"
        assert body["medical_history"] is None

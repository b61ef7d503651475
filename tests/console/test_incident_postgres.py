"""The incident view over a trail in PostgreSQL (`audit.sink: postgres`), read as phi-audit does.

Events are written by the audit code's own PostgreSQL sink; the reference is `phi-audit report`
run as a process over the same database. An edited row is named as phi-audit names it.
"""

from __future__ import annotations

import base64
import os
import sys
from pathlib import Path

import asyncpg
import pytest
from evidence_trails import phi_audit, request

from keys.config_file import load_section
from proxy.audit import AuditSettings, open_chain
from proxy.audit.factory import open_postgres_sink
from proxy.console.incident import IncidentQuery, load_incident

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grants"))

from grants_pg import DSN, drop_schema, new_schema, require_postgres

pytestmark = [pytest.mark.postgres]

NURSE = "https://idp.test|nurse"
TS = "2026-03-10T00:00:00.000Z"


@pytest.fixture
async def pg_config(tmp_path):
    """A config whose trail is a fresh schema of the test database, with its chain key."""
    await require_postgres()
    schema = new_schema()
    key = tmp_path / "audit.key"
    key.write_bytes(base64.b64encode(os.urandom(32)) + b"\n")
    key.chmod(0o600)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"audit:\n  sink: postgres\n  dsn: {DSN}\n  pg_schema: {schema}\n"
        "  key_file: ./audit.key\n  pg_timeout_seconds: 5\n"
    )
    settings = load_section(config, "audit", AuditSettings)
    sink = open_postgres_sink(settings)
    try:
        sink.append(
            open_chain(settings),
            [
                request(f"2026-03-0{d}T10:00:00.000Z", NURSE, {"practice-a": {f"p-{d}": ["ssn"]}})
                for d in range(1, 6)
            ],
            ts=TS,
            force_checkpoint=False,
        )
    finally:
        sink.close()
    yield config, schema
    await drop_schema(schema)


async def test_the_csv_is_what_phi_audit_report_prints_from_the_database(pg_config):
    config, schema = pg_config
    query = IncidentQuery.parse(NURSE, "2026-03-02", "2026-03-05")
    incident = await load_incident(config, query)
    assert incident.verification.verified, incident.verification.summary()
    assert incident.verification.database
    assert f"(schema {schema})" in incident.verification.location
    printed = phi_audit(config, *query.command()[1:])
    assert printed.returncode == 0, printed.stderr
    assert incident.csv().encode() == printed.stdout
    assert [r.record for r in incident.rows] == ["p-2", "p-3", "p-4"]


async def test_an_edited_row_is_named_as_phi_audit_names_it(pg_config):
    """A superuser edit (triggers off) fails verification at its row; the list is still shown."""
    config, schema = pg_config
    conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
            seq = await conn.fetchval(
                "UPDATE audit_events SET line = replace(line, '\"p-3\"', '\"p-9\"') "
                "WHERE line LIKE '%\"p-3\"%' RETURNING seq"
            )
            await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
    finally:
        await conn.close()
    query = IncidentQuery.parse(NURSE)
    incident = await load_incident(config, query)
    verification = incident.verification
    assert verification.state == "broken"
    assert f"audit_events row {seq} (in seq order): event seq {seq}: MAC does not match" in (
        verification.problem or ""
    )
    assert "pg_dump" in verification.evidence()
    assert "p-9" in [r.record for r in incident.rows]
    printed = phi_audit(config, *query.command()[1:])
    assert printed.returncode == 1
    assert incident.csv().encode() == printed.stdout

"""One audit trail for the fleet, in PostgreSQL: verified, reported, and not rewritable.

Two `phi-proxy serve` replicas write it, `phi-audit` verifies and reports from it, and the
role set up as docs/fleet.md says cannot rewrite it.

Both replicas keep grants AND the audit trail in the test database (`audit.sink: postgres`).
"""

import asyncio
import base64
import io
import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from fleet_harness import MASKED, PRACTICE, SSN
from grants_pg import DSN, drop_schema, new_schema

from proxy.audit.chain import Chain
from proxy.audit.postgres_sink import PostgresSink
from proxy.audit.secrets import ChainKey
from tests.cli_process import run_cli

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres, pytest.mark.slow]

FLEET_DOC = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


@pytest.fixture
async def audit_schema(fleet):
    """A fresh audit schema (the grant schema is the fleet fixture's), dropped afterwards."""
    name = new_schema()
    yield name
    await drop_schema(name)


@pytest.fixture
def audit_key(fleet):
    """The fleet's shared chain key, written next to the configs (every replica reads it)."""
    material = os.urandom(32)
    path = fleet.folder / "audit.key"
    path.write_bytes(base64.b64encode(material) + b"\n")
    path.chmod(0o600)
    return material


def audit_section(schema, dsn=DSN, **extra):
    return {
        "sink": "postgres",
        "dsn": dsn,
        "pg_schema": schema,
        "key_file": "./audit.key",
        "flush_interval": 50,
        "pg_timeout_seconds": 1,
        **extra,
    }


def phi_audit(config, *args):
    """Run `phi-audit` as a real subprocess."""
    return run_cli(
        [sys.executable, "-m", "proxy.audit", "-c", str(config), *args],
        text=True,
        timeout=60,
        check=False,
    )


async def sql(statement, *params, user="postgres"):
    """Run one statement in its own connection; return the first value."""
    conn = await asyncpg.connect(DSN.replace("postgres@", f"{user}@", 1), timeout=5)
    try:
        return await conn.fetchval(statement, *params)
    finally:
        await conn.close()


async def tamper(schema, statement):
    """As superuser: switch the append-only triggers off, run `statement`, switch them on."""
    conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        async with conn.transaction():
            await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
            value = await conn.fetchval(statement)
            await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        return value
    finally:
        await conn.close()


async def fleet_with_history(fleet, audit_schema):
    """Two replicas on one audit chain; alice reads through a, bob through b, carol is masked.

    Bob's grant is made with `phi-grants` (its change event goes to the same chain).
    Returns the config both replicas use for the trail (a's).
    """
    section = audit_section(audit_schema)
    proxy_a = await fleet.proxy("a", audit=section)
    proxy_b = await fleet.proxy("b", audit=section)
    await fleet.grant("alice")
    added = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "proxy.grants", "-c", str(proxy_b.config_path), "add",
         "--subject", f"{fleet.issuer.issuer}|bob", "--practice", PRACTICE, "--ttl", "1d",
         "--reason", "cover shift", "--by", "ops"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert await fleet.ssn_seen_by(proxy_a, "alice") == SSN
    assert await fleet.ssn_seen_by(proxy_b, "bob") == SSN
    assert await fleet.ssn_seen_by(proxy_a, "carol") == MASKED
    assert await fleet.ssn_seen_by(proxy_b, "carol") == MASKED
    await proxy_a.stop()  # shutdown writes what is queued, and a checkpoint
    await proxy_b.stop()
    for replica in (proxy_a, proxy_b):
        lost = [m for m in replica.messages() if "audit trail" in m and "lost" in m]
        assert not lost, f"replica {replica.name} lost audit events at shutdown: {lost}"
    return proxy_a.config_path, (proxy_a.pid, proxy_b.pid)


class TestOneTrailForTheFleet:
    @pytest.mark.usefixtures("audit_key")
    async def test_both_replicas_verify_as_one_trail_and_the_report_covers_both(
        self, fleet, audit_schema
    ):
        """`phi-audit verify` (subprocess) passes on both replicas' events; report has both."""
        config, pids = await fleet_with_history(fleet, audit_schema)

        verified = await asyncio.to_thread(phi_audit, config, "verify")
        assert verified.returncode == 0, verified.stderr
        assert verified.stdout.startswith("OK: ")
        assert f"(schema {audit_schema})" in verified.stdout
        assert "postgres@" not in verified.stdout + verified.stderr

        reported = await asyncio.to_thread(phi_audit, config, "report", "--format", "json")
        assert reported.returncode == 0, reported.stderr
        rows = {(r["subject"], r["record"], r["field_class"]) for r in json.loads(reported.stdout)}
        issuer = fleet.issuer.issuer
        assert rows == {(f"{issuer}|alice", "p-1", "ssn"), (f"{issuer}|bob", "p-1", "ssn")}

        sink = PostgresSink(DSN, schema=audit_schema, create=False)
        try:
            exported = io.BytesIO()
            head = sink.write_lines(exported)
            lines = exported.getvalue().splitlines()
        finally:
            sink.close()
        events = [json.loads(line) for line in lines]
        assert [e["seq"] for e in events] == list(range(1, head.seq + 1))
        started = {e["details"]["pid"] for e in events if e.get("action") == "start"}
        assert started == set(pids), "both replicas wrote into the one chain"
        changes = [e for e in events if e["type"] == "grant_change"]
        assert [(c["action"], c["actor"]) for c in changes] == [("add", "ops")]
        assert not any(SSN.encode() in line for line in lines)

    @pytest.mark.usefixtures("audit_key")
    async def test_an_edited_row_fails_verify_naming_the_event(self, fleet, audit_schema):
        """A superuser who bypasses the triggers and edits one event is caught: seq and row."""
        config, _ = await fleet_with_history(fleet, audit_schema)
        seq = await tamper(
            audit_schema,
            "UPDATE audit_events SET line = replace(line, '\"p-1\"', '\"p-7\"') WHERE seq = "
            '(SELECT min(seq) FROM audit_events WHERE line LIKE \'%"type":"request"%\' '
            "AND line LIKE '%\"p-1\"%') RETURNING seq",
        )
        assert seq is not None
        verified = await asyncio.to_thread(phi_audit, config, "verify")
        assert verified.returncode == 1
        assert f"audit_events row {seq} (in seq order): event seq {seq}: MAC does not match" in (
            verified.stderr
        )
        reported = await asyncio.to_thread(phi_audit, config, "report")
        assert reported.returncode == 1
        assert "WARNING: the trail does not verify" in reported.stderr

    @pytest.mark.usefixtures("audit_key")
    async def test_deleting_the_newest_events_is_a_cut_off(self, fleet, audit_schema):
        """Rows deleted from the end leave the trail behind audit_head: verify fails."""
        config, _ = await fleet_with_history(fleet, audit_schema)
        await tamper(
            audit_schema, "DELETE FROM audit_events WHERE seq > (SELECT seq - 2 FROM audit_head)"
        )
        verified = await asyncio.to_thread(phi_audit, config, "verify")
        assert verified.returncode == 1
        assert re.search(r"ends at seq \d+ but audit_head records seq \d+", verified.stderr)


class TestDocumentedRole:
    async def test_the_proxy_role_appends_but_cannot_update_or_delete(
        self, audit_schema, audit_key
    ):
        """The GRANTs in docs/fleet.md let the role write the chain and nothing more."""
        owner = PostgresSink(DSN, schema=audit_schema)  # the schema owner creates the tables
        chain = Chain(ChainKey(audit_key), checkpoint_every=1000)
        try:
            owner.append(chain, [{"type": "proxy", "ts": "t"}], ts="t", force_checkpoint=False)
        finally:
            owner.close()
        role = f"phi_test_role_{secrets.token_hex(6)}"
        block = re.search(r"```sql\n(.*?)```", FLEET_DOC.read_text(encoding="utf-8"), re.DOTALL)
        assert block, "docs/fleet.md documents the role setup in a sql block"
        setup = re.sub(r"\bphi_audit\b", audit_schema, block.group(1))
        setup = re.sub(r"\bphi_proxy\b", role, setup)
        assert "GRANT" in setup
        conn = await asyncpg.connect(DSN, timeout=5)
        try:
            await conn.execute(f'CREATE ROLE "{role}" LOGIN')
            await conn.execute(setup)
            await self.check_role(role, audit_schema, chain)
        finally:
            await conn.execute(f'DROP OWNED BY "{role}"')
            await conn.execute(f'DROP ROLE "{role}"')
            await conn.close()

    async def check_role(self, role, schema, chain):
        dsn = DSN.replace("postgres@", f"{role}@", 1)
        sink = PostgresSink(dsn, schema=schema, timeout=5)
        try:  # the writer's own calls, run off this loop as the proxy runs them
            await asyncio.to_thread(
                sink.append, chain, [{"type": "proxy", "ts": "t"}], ts="t", force_checkpoint=True
            )
            await asyncio.to_thread(sink.probe)
            exported = io.BytesIO()
            head = await asyncio.to_thread(sink.write_lines, exported)
            lines = exported.getvalue().splitlines()
        finally:
            await asyncio.to_thread(sink.close)
        assert head.seq == len(lines) >= 3
        conn = await asyncpg.connect(dsn, server_settings={"search_path": schema}, timeout=5)
        try:
            for statement in (
                "UPDATE audit_events SET line = '{}'",
                "DELETE FROM audit_events",
                "TRUNCATE audit_events",
                "ALTER TABLE audit_events DISABLE TRIGGER USER",
                "DELETE FROM audit_head",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
                    await conn.execute(statement)
                assert "permission denied" in str(refused.value) or "owner" in str(refused.value)
        finally:
            await conn.close()


class TestAuditDatabaseDown:
    @pytest.mark.usefixtures("audit_key")
    async def test_a_start_without_the_audit_database_says_what_to_check(
        self, fleet, forwarder, audit_schema
    ):
        """`serve` refuses to start, with PostgreSQL advice (not a file sink's folder advice)."""
        await forwarder.stop()
        config = fleet.write_config("down", DSN, audit=audit_section(audit_schema, forwarder.dsn()))
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "proxy", "serve", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0
        assert "PostgreSQL answers" in done.stderr
        assert "folder" not in done.stderr

    @pytest.mark.usefixtures("audit_key")
    async def test_masked_and_not_ready_until_the_audit_database_returns(
        self, fleet, forwarder, audit_schema
    ):
        """Audit database gone (deny): masked and /readyz 503 at once; back: events written."""
        proxy = await fleet.proxy("a", audit=audit_section(audit_schema, forwarder.dsn()))
        await fleet.grant("alice")
        assert await fleet.ssn_seen_by(proxy, "alice") == SSN

        await forwarder.stop()
        stopped = time.monotonic()
        while await fleet.readyz(proxy) != 503:
            assert time.monotonic() - stopped < 5, "the proxy did not notice the audit database"
            await asyncio.sleep(0.01)
        noticed = time.monotonic() - stopped
        assert await fleet.ssn_seen_by(proxy, "alice") == MASKED

        await forwarder.start()
        deadline = time.monotonic() + 15
        while await fleet.ssn_seen_by(proxy, "alice") != SSN:
            assert time.monotonic() < deadline, "the proxy did not recover"
            await asyncio.sleep(0.05)
        assert await fleet.readyz(proxy) == 200
        await proxy.stop()
        print(f"\n[fleet] audit database down -> /readyz 503 after {noticed:.2f} s")  # noqa: T201

        verified = await asyncio.to_thread(phi_audit, proxy.config_path, "verify")
        assert verified.returncode == 0, verified.stderr
        sink = PostgresSink(DSN, schema=audit_schema, create=False)
        try:
            exported = io.BytesIO()
            sink.write_lines(exported)
            lines = exported.getvalue().splitlines()
        finally:
            sink.close()
        denied = [e for e in map(json.loads, lines) if e.get("audit_denied")]
        assert denied, "the masked request's event was queued and written after recovery"

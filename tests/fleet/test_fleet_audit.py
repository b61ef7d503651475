"""The PostgreSQL audit sink: replicas writing at once make one chain that verifies as one trail."""

import asyncio
import base64
import os
import subprocess
import sys
import textwrap

import asyncpg
import pytest
from grants_forwarder import Forwarder
from grants_pg import DSN, drop_schema, new_schema, require_postgres

from proxy.audit.chain import Chain
from proxy.audit.postgres_sink import AuditStoreUnavailable, PostgresSink, export_trail
from proxy.audit.report import ReportFilter, build_report
from proxy.audit.secrets import ChainKey
from proxy.audit.verify import iter_events, verify_files

pytestmark = [pytest.mark.postgres]

WRITER = textwrap.dedent(
    """
    import base64, os, sys
    from proxy.audit.chain import Chain
    from proxy.audit.postgres_sink import PostgresSink
    from proxy.audit.secrets import ChainKey

    dsn, schema, subject, batches = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    version = int(sys.argv[5])  # the line format this replica's proxy writes
    key = ChainKey(base64.b64decode(os.environ["CHAIN_KEY"]))
    chain = Chain(key, checkpoint_every=7, format_version=version)
    sink = PostgresSink(dsn, schema=schema)
    for n in range(batches):
        events = [
            {
                "type": "request",
                "ts": f"2026-01-01T00:00:{n % 60:02d}.000000Z",
                "subject": subject,
                "records": [
                    {"practice": "practice-a", "field_classes": ["ssn"], "record": f"r-{n}-{i}"}
                    if version == 1 else
                    {"practice": "practice-a", "field_classes": ["ssn"], "records": [f"r-{n}-{i}"]}
                ],
            }
            for i in range(3)
        ]
        sink.append(chain, events, ts="2026-01-01T00:00:00.000000Z", force_checkpoint=False)
    sink.close()
    """
)


@pytest.fixture
async def schema():
    """A fresh audit schema, dropped afterwards."""
    await require_postgres()
    name = new_schema()
    yield name
    await drop_schema(name)


@pytest.fixture
def key_bytes():
    return os.urandom(32)


def chain_for(key_bytes):
    return Chain(ChainKey(key_bytes), checkpoint_every=7)


def event(subject, record):
    return {
        "type": "request",
        "ts": "2026-01-01T00:00:00.000000Z",
        "subject": subject,
        "records": [{"practice": "practice-a", "field_classes": ["ssn"], "records": [record]}],
    }


class TestPostgresSink:
    def test_two_replicas_at_once_make_one_verifiable_trail(self, schema, key_bytes, tmp_path):
        """Two processes appending concurrently produce one gap-free chain; the report has both.

        Mid rolling upgrade: one replica still writes line format 1, the other 2, interleaved.
        """
        env = {**os.environ, "CHAIN_KEY": base64.b64encode(key_bytes).decode()}
        writers = [
            subprocess.Popen(
                [sys.executable, "-c", WRITER, DSN, schema, f"https://idp|{who}", "40", version],
                env=env,
            )
            for who, version in (("alice", "1"), ("bob", "2"))
        ]
        assert [w.wait(timeout=120) for w in writers] == [0, 0]
        sink = PostgresSink(DSN, schema=schema)
        try:
            path, head = export_trail(sink, tmp_path)
        finally:
            sink.close()
        result = verify_files([path], key=ChainKey(key_bytes))
        assert result.problem is None, str(result.problem)
        assert result.last_seq == head.seq
        requests = [e for _, _, e in iter_events([path]) if e.get("type") == "request"]
        assert len(requests) == 2 * 40 * 3
        assert [e["type"] for _, _, e in iter_events([path])].count("genesis") == 1
        assert {e["v"] for e in requests} == {1, 2}
        rows = build_report(requests, ReportFilter(None, None, None, None, None))
        assert {row.subject for row in rows} == {"https://idp|alice", "https://idp|bob"}
        assert len(rows) == len(requests), "every record of both formats is reported"

    def test_history_is_append_only(self, schema, key_bytes):
        """The proxy's own connection cannot update, delete or truncate audit events."""
        sink = PostgresSink(DSN, schema=schema)
        try:
            sink.append(chain_for(key_bytes), [event("s", "r")], ts="t", force_checkpoint=True)
        finally:
            sink.close()

        async def tamper(statement):
            conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        for statement, message in [
            ("UPDATE audit_events SET line = '{}'", "append-only"),
            ("DELETE FROM audit_events", "append-only"),
            ("TRUNCATE audit_events", "append-only"),
            ("UPDATE audit_head SET seq = 0", "only moves forward"),
        ]:
            with pytest.raises(asyncpg.PostgresError, match=message):
                asyncio.run(tamper(statement))

    def test_edit_by_a_superuser_is_detected(self, schema, key_bytes, tmp_path):
        """Someone who disables the triggers and edits an event is caught by verify."""
        sink = PostgresSink(DSN, schema=schema)
        chain = chain_for(key_bytes)
        try:
            for n in range(3):
                sink.append(chain, [event("s", f"r{n}")], ts="t", force_checkpoint=False)

            async def edit():
                conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
                try:
                    await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
                    await conn.execute(
                        "UPDATE audit_events SET line = replace(line, '\"r1\"', '\"r9\"')"
                    )
                finally:
                    await conn.close()

            asyncio.run(edit())
            path, _ = export_trail(sink, tmp_path)
        finally:
            sink.close()
        result = verify_files([path], key=ChainKey(key_bytes))
        assert result.problem is not None
        assert "MAC does not match" in result.problem.message

    def test_export_streams_in_batches_and_verifies_like_one_read(
        self, schema, key_bytes, tmp_path
    ):
        """Batch by batch through a cursor, the export is the whole trail, in order, verified."""
        sink = PostgresSink(DSN, schema=schema)
        chain = chain_for(key_bytes)
        try:
            for n in range(40):
                sink.append(chain, [event("s", f"r{n}")], ts="t", force_checkpoint=n % 9 == 0)
            whole = tmp_path / "whole.jsonl"
            with whole.open("wb") as out:
                whole_head = sink.write_lines(out, batch_rows=100_000)
            batched = tmp_path / "batched.jsonl"
            with batched.open("wb") as out:
                head = sink.write_lines(out, batch_rows=3)
        finally:
            sink.close()
        assert batched.read_bytes() == whole.read_bytes()
        assert head == whole_head
        result = verify_files([batched], key=ChainKey(key_bytes))
        assert result.problem is None, str(result.problem)
        assert result.last_seq == head.seq
        records = [
            e["records"][0]["records"][0] for _, _, e in iter_events([batched]) if "records" in e
        ]
        assert records == [f"r{n}" for n in range(40)]

    def test_unreachable_database_raises_oserror_within_timeout(self, schema, key_bytes):
        """A stopped database makes append and probe raise OSError, as the trail expects."""
        forwarder = Forwarder()  # never started: the port refuses connections
        sink = PostgresSink(forwarder.dsn(), schema=schema, timeout=1)
        try:
            with pytest.raises(OSError, match="audit database") as caught:
                sink.append(chain_for(key_bytes), [event("s", "r")], ts="t", force_checkpoint=False)
            assert isinstance(caught.value, AuditStoreUnavailable)
            with pytest.raises(OSError, match="audit database"):
                sink.probe()
        finally:
            sink.close()

    def test_repr_names_no_credentials(self, schema):
        """The sink describes host, port, database and schema, never user or password."""
        sink = PostgresSink("postgresql://auditor:hunter2@db.internal:5433/phi", schema=schema)
        assert "hunter2" not in repr(sink)
        assert "auditor" not in repr(sink)
        assert "db.internal:5433/phi" in sink.describe()

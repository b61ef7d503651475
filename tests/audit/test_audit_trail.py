"""The batched writer: health, the deny/allow policy, retention while the sink is down."""

from __future__ import annotations

import orjson
from audit_helpers import settings_in

from proxy.audit import AuditTrail, FileSink, StdoutSink, open_chain, trail_files, verify_files
from proxy.audit.secrets import load_chain_key


def make_trail(tmp_path, *, deny=True):
    settings = settings_in(tmp_path, fsync=False)
    trail = AuditTrail(
        FileSink(settings.path, fsync=False),
        open_chain(settings),
        flush_interval=0.01,
        checkpoint_seconds=3600,
        deny_on_failure=deny,
    )
    return settings, trail


def payloads(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class TestAuditTrail:
    async def test_start_writes_a_start_event_and_close_a_checkpoint(self, tmp_path):
        """A proxy's trail opens with genesis + start and ends with stop + checkpoint."""
        settings, trail = make_trail(tmp_path)
        await trail.start()
        trail.emit({"type": "proxy", "ts": "t", "action": "x"})
        await trail.close()
        kinds = [(e["type"], e.get("action")) for e in payloads(settings.path)]
        assert kinds == [
            ("genesis", None),
            ("proxy", "start"),
            ("proxy", "x"),
            ("proxy", "stop"),
            ("checkpoint", None),
        ]

    async def test_a_failing_sink_denies_at_once_and_keeps_the_events(self, tmp_path):
        """One failed flush turns may_disclose off; the queued events are written on recovery."""
        settings, trail = make_trail(tmp_path)
        await trail.start()
        settings.path.rename(settings.path.with_name("audit.jsonl.1"))
        settings.path.mkdir()
        trail.emit({"type": "proxy", "ts": "t", "action": "during-outage"})
        await trail.flush()
        assert not trail.healthy
        assert not trail.may_disclose()
        settings.path.rmdir()
        await trail.flush()
        assert trail.healthy
        assert trail.may_disclose()
        await trail.close()
        actions = [e.get("action") for e in payloads(settings.path)]
        assert "during-outage" in actions
        result = verify_files(trail_files(settings.path), key=load_chain_key(settings))
        assert result.problem is None

    async def test_allow_mode_keeps_disclosing_while_failing(self, tmp_path):
        """on_failure: allow reports unhealthy but still lets the pipeline decrypt."""
        settings, trail = make_trail(tmp_path, deny=False)
        await trail.start()
        settings.path.rename(settings.path.with_name("audit.jsonl.1"))
        settings.path.mkdir()
        await trail.flush()
        assert not trail.healthy
        assert trail.may_disclose()
        settings.path.rmdir()
        await trail.close()

    async def test_an_unwritable_sink_stops_the_start(self, tmp_path):
        """A proxy whose trail cannot be written at start refuses to start."""
        import pytest

        from proxy.audit import AuditError

        settings, trail = make_trail(tmp_path)
        settings.path.mkdir()
        with pytest.raises(AuditError, match="will not start"):
            await trail.start()

    async def test_stdout_sink_prints_a_chain(self, tmp_path, capfd):
        """The stdout sink prints the same sealed lines, starting with its own genesis."""
        settings = settings_in(tmp_path)
        sink = StdoutSink()
        sink.append(
            open_chain(settings), [{"type": "proxy", "ts": "t"}], ts="t", force_checkpoint=True
        )
        lines = capfd.readouterr().out.splitlines()
        assert [orjson.loads(x)["type"] for x in lines] == ["genesis", "proxy", "checkpoint"]
        out = tmp_path / "captured.jsonl"
        out.write_text("\n".join(lines) + "\n")
        assert verify_files([out], key=load_chain_key(settings)).problem is None

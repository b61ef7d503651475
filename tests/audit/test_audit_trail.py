"""The batched writer: health, the deny/allow policy, retention while the sink is down."""

from __future__ import annotations

import asyncio
import threading
import time

import orjson
from audit_helpers import settings_in

from proxy.audit import AuditTrail, FileSink, StdoutSink, open_chain, trail_files, verify_files
from proxy.audit.secrets import load_chain_key
from proxy.audit.sink import head_path
from proxy.audit.trail import SHUTDOWN_ATTEMPTS


def make_trail(tmp_path, *, deny=True, wrap=None, flush_interval=0.01):
    settings = settings_in(tmp_path, fsync=False)
    sink = FileSink(settings.path, fsync=False)
    trail = AuditTrail(
        sink if wrap is None else wrap(sink),
        open_chain(settings),
        flush_interval=flush_interval,
        checkpoint_seconds=3600,
        deny_on_failure=deny,
    )
    return settings, trail


async def wait_for_health(trail, *, healthy: bool, within: float = 30.0) -> None:
    """Wait until the writer (every 10 ms) has found the sink failing or working again."""
    deadline = time.monotonic() + within
    while trail.healthy is not healthy:
        assert time.monotonic() < deadline, f"the trail never became healthy={healthy}"
        await asyncio.sleep(0.01)


def payloads(path):
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


class FailingWrites:
    """A real FileSink whose next `failures` appends fail like a database that timed out.

    Each failing append first waits for `release` (set it beforehand for an immediate failure),
    so a test can hold a write in progress while the proxy shuts down.
    """

    def __init__(self, sink):
        self.sink = sink
        self.failures = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def describe(self):
        return self.sink.describe()

    def probe(self):
        self.sink.probe()

    def append(self, chain, batch, *, ts, force_checkpoint):
        if self.failures:
            self.failures -= 1
            self.entered.set()
            self.release.wait(10)
            raise TimeoutError("no answer from the audit store")
        return self.sink.append(chain, batch, ts=ts, force_checkpoint=force_checkpoint)


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

    async def test_close_waits_for_a_write_in_progress_and_keeps_its_events(self, tmp_path):
        """Shutdown during a slow write that then fails: its events are written by close()."""
        settings, trail = make_trail(tmp_path, wrap=FailingWrites)
        await trail.start()
        trail.sink.failures = 1
        trail.emit({"type": "proxy", "ts": "t", "action": "in-flight"})
        assert await asyncio.to_thread(trail.sink.entered.wait, 5)
        closing = asyncio.create_task(trail.close())
        await asyncio.sleep(0.05)
        assert not closing.done()  # close() waits for the write in progress
        trail.sink.release.set()
        await asyncio.wait_for(closing, 10)
        actions = [e.get("action") for e in payloads(settings.path)]
        assert actions.index("in-flight") < actions.index("stop")
        result = verify_files(trail_files(settings.path), key=load_chain_key(settings))
        assert result.problem is None

    async def test_close_retries_a_failing_last_write(self, tmp_path):
        """Two failed writes at shutdown still end with every event on disk (3 attempts)."""
        settings, trail = make_trail(tmp_path, wrap=FailingWrites, flush_interval=3600)
        await trail.start()
        trail.sink.release.set()
        trail.sink.failures = SHUTDOWN_ATTEMPTS - 1
        trail.emit({"type": "proxy", "ts": "t", "action": "queued"})
        await trail.close()
        actions = [e.get("action") for e in payloads(settings.path)]
        assert actions[-3:] == ["queued", "stop", None]  # None: the closing checkpoint
        assert trail.sink.failures == 0

    async def test_any_write_error_denies_and_the_writer_survives_it(self, tmp_path):
        """A corrupt head (seq beyond 64 bits) is not an OSError: still deny, keep, recover.

        Found in review: the writer task died on it while may_disclose() stayed True.
        """
        settings, trail = make_trail(tmp_path)
        await trail.start()
        head = head_path(settings.path)
        good_head = head.read_bytes()
        head.write_bytes(b'{"seq": 1e20, "hash": "x"}')
        settings.path.write_bytes(b"")  # the head file is all the writer has to go on
        trail.emit({"type": "proxy", "ts": "t", "action": "while-corrupt"})
        await wait_for_health(trail, healthy=False)
        assert not trail.may_disclose()
        assert trail._task is not None  # the writer lives on
        assert not trail._task.done()
        head.write_bytes(good_head)
        settings.path.unlink()  # a fresh file: the chain continues from the head
        await wait_for_health(trail, healthy=True)
        await trail.close()
        assert "while-corrupt" in [e.get("action") for e in payloads(settings.path)]

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


async def test_events_that_no_longer_fit_after_a_failed_write_are_counted(tmp_path):
    """Review 7: a failed write while the queue filled up lost events without a trace.

    Now the overflow is counted and the next write starts with an `events_dropped` record.
    """
    from proxy.audit.trail import MAX_PENDING

    settings, trail = make_trail(tmp_path, wrap=FailingWrites)
    await trail.start()
    sink = trail.sink
    for n in range(MAX_PENDING):  # a long outage filled the queue
        trail.emit({"type": "request", "n": n})
    sink.failures = 1
    flushing = asyncio.create_task(trail.flush())
    await asyncio.to_thread(sink.entered.wait, 10)
    for n in range(MAX_PENDING, MAX_PENDING + 500):  # requests go on while the write hangs
        trail.emit({"type": "request", "n": n})
    sink.release.set()
    await flushing
    await trail.flush()
    events = payloads(settings.path)
    written = {p["n"] for p in events if p.get("type") == "request"}
    gaps = [p["details"]["count"] for p in events if p.get("action") == "events_dropped"]
    assert len(written) + sum(gaps) == MAX_PENDING + 500
    assert gaps == [500]
    assert MAX_PENDING + 499 in written  # the newest are kept, as when the queue is full

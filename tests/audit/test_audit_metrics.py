"""The audit trail's failures show in the metrics with the counts the trail records.

Events dropped from a full queue, and responses masked under `on_failure: deny`.
"""

from __future__ import annotations

import asyncio

from test_audit_proxy import scripted_scenario
from test_audit_trail import FailingWrites, make_trail, payloads

from proxy import metrics
from proxy.audit.requests import AuditState, RequestAuditor
from proxy.audit.settings import AlertSettings
from proxy.audit.trail import MAX_PENDING
from proxy.grants import NO_ACCESS


def _counter(name: str) -> float:
    return metrics.current().registry.get_sample_value(name) or 0.0


async def test_dropped_events_are_counted_as_the_trail_records_the_gap(tmp_path):
    settings, trail = make_trail(tmp_path, wrap=FailingWrites)
    await trail.start()
    before = _counter("phi_proxy_audit_events_dropped_total")
    sink = trail.sink
    for n in range(MAX_PENDING):
        trail.emit({"type": "request", "n": n})
    sink.failures = 1
    flushing = asyncio.create_task(trail.flush())
    await asyncio.to_thread(sink.entered.wait, 10)
    for n in range(MAX_PENDING, MAX_PENDING + 300):  # the queue overflows while the write hangs
        trail.emit({"type": "request", "n": n})
    sink.release.set()
    await flushing
    await trail.flush()
    gaps = [
        p["details"]["count"]
        for p in payloads(settings.path)
        if p.get("action") == "events_dropped"
    ]
    assert _counter("phi_proxy_audit_events_dropped_total") - before == sum(gaps) == 300
    await trail.close()


async def test_responses_masked_because_the_trail_is_down_are_counted(tmp_path):
    settings, trail = make_trail(tmp_path, deny=True)
    await trail.start()
    settings.path.rename(settings.path.with_name("audit.jsonl.1"))
    settings.path.mkdir()  # the trail cannot be written now
    await trail.flush()
    auditor = RequestAuditor(trail, AlertSettings())
    before = _counter("phi_proxy_audit_denied_responses_total")
    assert auditor.gate(NO_ACCESS, AuditState()) is NO_ACCESS
    assert _counter("phi_proxy_audit_denied_responses_total") - before == 1
    settings.path.rmdir()
    await trail.close()


def _alerts(name: str) -> float:
    return (
        metrics.current().registry.get_sample_value("phi_proxy_alerts_total", {"alert": name})
        or 0.0
    )


async def test_alerts_are_counted_per_request_also_when_their_lines_are_held_back(audit_env):
    """Each request that raises an alert counts, also when the line itself is held back.

    Revoked Carol's first attempt writes a `lapsed_grant_use` line; her second, within the
    per-subject interval, writes none but still counts.
    """
    before = _alerts("lapsed_grant_use")
    await scripted_scenario(audit_env)
    once = _alerts("lapsed_grant_use") - before
    await audit_env.get("/api/patients/a1", sub="carol")
    assert once == 1
    assert _alerts("lapsed_grant_use") - before == 2

"""Reloads, key usage and the state gauges, counted by a real proxy and read from /metrics.

The proxy runs in this process (the `live` fixture: real keys, SQLite grants, a portal that
stores what it is sent); its admin app answers /metrics as it does in `serve`.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from proxy.admin import build_admin_app

SSN = "219-09-9999"


@pytest.fixture
async def scrape(live):
    """A function answering {(name, labels as a sorted tuple): value} from the admin /metrics."""
    server = TestServer(build_admin_app(live.runtime), host="127.0.0.1")
    await server.start_server()

    async def values() -> dict:
        async with live.http.get(str(server.make_url("/metrics"))) as response:
            assert response.status == 200
            text = await response.text()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    try:
        yield values
    finally:
        await server.close()


def _reloads(values: dict, result: str) -> float:
    return values[("phi_proxy_reloads_total", (("result", result),))]


async def test_applied_and_refused_reloads_are_counted(live, scrape):
    before = await scrape()
    assert await live.reloader.reload(reason="test")
    live.config.write_text("keys: [unclosed\n")
    await live.reloader.tick()
    after = await scrape()
    assert _reloads(after, "refused") - _reloads(before, "refused") == 1
    # The keystore is still applied with the previous config (and counted as applied).
    assert _reloads(after, "applied") - _reloads(before, "applied") == 2


async def test_encryptions_show_as_key_usage_against_the_limit(live, scrape):
    record = {"patient_id": "m1", "ssn": SSN, "member_id": "M-m1", "medical_history": "flu"}
    assert await live.post_patient("practice-a", record) == 201
    await live.reloader.tick()  # flushes the usage counts, as the background loop does
    values = await scrape()
    used = values[("phi_proxy_key_encryptions", (("practice", "practice-a"),))]
    ratio = values[("phi_proxy_key_usage_ratio", (("practice", "practice-a"),))]
    assert used >= 2
    assert ratio == used / live.runtime.settings.keys.usage_limit
    encrypted = values[
        (
            "phi_proxy_phi_values_total",
            (("action", "encrypted"), ("field_class", "ssn"), ("practice", "practice-a")),
        )
    ]
    assert encrypted >= 1


async def test_the_state_gauges_report_the_running_dependencies(live, scrape):
    values = await scrape()
    for dependency in ("keystore", "kek", "grant_store", "audit_sink", "upstream_pool"):
        assert values[("phi_proxy_up", (("dependency", dependency),))] == 1, dependency
    assert ("phi_proxy_up", (("dependency", "grant_listener"),)) not in values  # SQLite
    assert values[("phi_proxy_jwks_age_seconds", ())] >= 0

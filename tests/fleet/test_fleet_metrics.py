"""The grant store's gauges in /metrics follow a real PostgreSQL going away and coming back."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_fleet import LISTENER_DOWN, warm

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def _up(fleet, proxy) -> dict[str, float]:
    async with fleet.http.get(proxy.admin_url + "/metrics") as response:
        text = await response.text()
    return {
        sample.labels["dependency"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "phi_proxy_up"
        for sample in family.samples
    }


async def test_grant_store_and_listener_gauges_follow_the_database(fleet, forwarder):
    proxy = await fleet.proxy("a", forwarder.dsn())
    await fleet.grant("alice")
    await warm(fleet, proxy, "alice")
    up = await _up(fleet, proxy)
    assert (up["grant_store"], up["grant_listener"]) == (1, 1)

    mark = len(proxy.lines)
    await forwarder.stop()
    await proxy.wait_log(LISTENER_DOWN, after=mark)
    up = await _up(fleet, proxy)
    assert (up["grant_store"], up["grant_listener"]) == (0, 0)
    assert up["keystore"] == 1

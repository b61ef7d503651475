"""`/metrics` scraped by a real Prometheus server from a real `phi-proxy serve --workers 2`.

The values are read back over Prometheus's HTTP API after real requests through the proxy: a
grantee's read counts as decrypted, a non-grantee's as masked, and the sums cover both workers
(each answers on the shared port; whichever answers the scrape adds up every worker's files).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from blackbox_env import PLANTED
from prometheus_client.parser import text_string_to_metric_families
from prometheus_server import promtool, running_prometheus
from test_blackbox_serve import _token, issuer_subject, served  # noqa: F401 - the fixture

from proxy.grants import GrantRequest, SQLiteGrantStore

pytestmark = pytest.mark.slow
ALERT_RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yaml"
SSN = "219-09-9999"
GRANTEE_READS = 6
OTHER_READS = 4


@pytest.fixture(autouse=True)
def private_tmpdir(tmp_path, monkeypatch):
    """TMPDIR for the served proxy (set before it starts): where its metrics folder goes."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    return folder


async def _read(served, sub: str, times: int) -> list[dict]:  # noqa: F811
    """`times` reads of /api/p1 as `sub`, each on a new connection (any worker may answer)."""
    headers = {"Authorization": f"Bearer {_token(served['issuer'], sub)}"}
    bodies = []
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as http:
        for _ in range(times):
            async with http.get(served["url"] + "/api/p1", headers=headers) as response:
                assert response.status == 200
                bodies.append(json.loads(await response.read()))
    return bodies


def _plant_ssn(served) -> None:  # noqa: F811
    from keys.settings import open_keyring

    keyring = open_keyring(served["settings"].keys)
    PLANTED.add(SSN)
    served["portal"].script(
        "/api/p1",
        orjson.dumps(
            {"practice_id": "practice-a", "ssn": keyring.encrypt("practice-a", "ssn", SSN)}
        ),
    )


async def _exposition(served) -> bytes:  # noqa: F811
    async with (
        aiohttp.ClientSession() as http,
        http.get(served["admin"] + "/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.read()


@pytest.mark.parametrize("served", [2], indirect=True)
async def test_prometheus_reads_decrypted_and_masked_counts_summed_over_two_workers(
    served,  # noqa: F811
    tmp_path,
):
    """Prometheus scrapes the admin port and gets every worker's counts, added up."""
    _plant_ssn(served)
    assert all(b["ssn"] == SSN for b in await _read(served, "alice", GRANTEE_READS))
    assert all(b["ssn"] == "***-**-9999" for b in await _read(served, "bob", OTHER_READS))
    async with running_prometheus(tmp_path / "prometheus", [served["admin"][7:]]) as prom:
        value = (
            "sum(phi_proxy_phi_values_total{{action={!r},field_class='ssn',practice='practice-a'}})"
        )
        decrypted = await prom.value_when(value.format("decrypted"), GRANTEE_READS)
        masked = await prom.value_when(value.format("masked"), OTHER_READS)
        forwarded = await prom.value_when(
            'sum(phi_proxy_requests_total{outcome="forwarded",status_class="2xx",route="-"})',
            GRANTEE_READS + OTHER_READS,
        )
        latencies = await prom.value_when(
            "sum(phi_proxy_proxy_duration_seconds_count)", GRANTEE_READS + OTHER_READS
        )
        portal = await prom.value_when(
            "sum(phi_proxy_portal_duration_seconds_count)", GRANTEE_READS + OTHER_READS
        )
        grant_store_up = await prom.value_when('phi_proxy_up{dependency="grant_store"}', 1)
        audit_up = await prom.value_when('phi_proxy_up{dependency="audit_sink"}', 1)
        restarts = await prom.value_when("sum(phi_proxy_worker_restarts_total)", 0)
        scrape_up = await prom.value_when('up{job="phi-proxy"}', 1)
    assert decrypted == GRANTEE_READS
    assert masked == OTHER_READS
    assert forwarded == GRANTEE_READS + OTHER_READS
    assert latencies == GRANTEE_READS + OTHER_READS
    assert portal == GRANTEE_READS + OTHER_READS
    assert (grant_store_up, audit_up, restarts, scrape_up) == (1, 1, 0, 1)
    served["process"].send_signal(signal.SIGTERM)


@pytest.mark.parametrize("served", [1, 2], indirect=True)
async def test_the_exposition_passes_promtool_and_names_no_subject_token_or_value(
    served,  # noqa: F811
):
    """`promtool check metrics` accepts /metrics; no subject, token or PHI value is in it."""
    _plant_ssn(served)
    await _read(served, "alice", 2)
    await _read(served, "bob", 1)
    text = await _exposition(served)
    checked = promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert b'phi_proxy_phi_values_total{action="decrypted"' in text
    for secret in (SSN, "alice", "bob", _token(served["issuer"], "alice")[:40], "/api/p1"):
        assert secret.encode() not in text


def _workers(supervisor: int) -> list[int]:
    """The supervisor's worker processes (spawned children; not a resource tracker)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


def _sample(text: bytes, name: str) -> float | None:
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


@pytest.mark.parametrize("served", [2], indirect=True)
async def test_a_replaced_worker_is_counted_and_the_private_folder_goes_with_the_proxy(
    private_tmpdir,
    served,  # noqa: F811
):
    """Workers share a 0700 folder; a killed worker counts as a restart; SIGTERM removes it."""
    (folder,) = private_tmpdir.glob("phi-proxy-metrics-*")
    assert folder.stat().st_mode & 0o777 == 0o700
    workers = _workers(served["process"].pid)
    assert len(workers) == 2
    os.kill(workers[0], signal.SIGKILL)
    restarts = None
    for _ in range(200):  # bounded wait for the replacement; the value is asserted below
        restarts = _sample(await _exposition(served), "phi_proxy_worker_restarts_total")
        if restarts == 1 and len(_workers(served["process"].pid)) == 2:
            break
        await asyncio.sleep(0.1)
    assert restarts == 1
    # The dead worker's gauges are forgotten (a stale "down" would otherwise stay in the min).
    assert list(folder.glob(f"gauge_live*_{workers[0]}.db")) == []
    assert list(folder.glob(f"gauge_live*_{_workers(served['process'].pid)[0]}.db")) != []
    text = await _exposition(served)
    assert _sample(text, "phi_proxy_up") == 1
    served["process"].send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(served["process"].wait(), 30) == 0
    assert list(private_tmpdir.glob("phi-proxy-metrics-*")) == []


async def test_a_single_process_keeps_its_metrics_in_memory(private_tmpdir, served):  # noqa: F811
    """With one process no folder is made: nothing is written outside the process."""
    _plant_ssn(served)
    await _read(served, "alice", 1)
    assert b"phi_proxy_requests_total" in await _exposition(served)
    assert list(private_tmpdir.iterdir()) == []


def _labelled(text: bytes, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


async def test_the_opened_token_cache_size_counts_the_compiled_cores_cache(served):  # noqa: F811
    """A grantee's read opens one token; whichever core opened it, the gauge says so."""
    cache = {"cache": "opened_tokens"}
    assert _labelled(await _exposition(served), "phi_proxy_cache_entries", cache) == 0
    _plant_ssn(served)
    await _read(served, "alice", 2)
    assert _labelled(await _exposition(served), "phi_proxy_cache_entries", cache) == 1


async def _lapsed_grant(served, sub: str) -> None:  # noqa: F811
    """Give `sub` a grant for practice-a and revoke it: the served proxy sees it lapsed."""
    settings, now = served["settings"], datetime.now(UTC)
    store = SQLiteGrantStore(settings.grants.sqlite_path, max_ttl=settings.grants.max_ttl)
    try:
        grant = await store.add(
            GrantRequest(
                subject=issuer_subject(served["issuer"], sub),
                practice="practice-a",
                field_classes=None,
                expires_at=now + timedelta(hours=1),
                created_by="tests",
                reason="metrics test",
            ),
            now=now,
        )
        await store.revoke(grant_id=grant.id, by="tests", reason="left", now=now)
    finally:
        await store.close()


@pytest.mark.parametrize("served", [2], indirect=True)
async def test_the_shipped_alert_rules_fire_on_the_proxys_own_metrics(served, tmp_path):  # noqa: F811
    """deploy/prometheus/alerts.yaml in a real Prometheus, on the served proxy's metrics.

    Quiet while nothing happens; a revoked caller's read fires PhiProxyLapsedGrantUse at the
    next evaluation (its series exists at 0 before the first lapse, so increase() sees it).
    """
    _plant_ssn(served)
    await _lapsed_grant(served, "carol")
    folder = tmp_path / "prometheus"
    lapsed = 'phi_proxy_alerts_total{alert="lapsed_grant_use"}'
    async with running_prometheus(folder, [served["admin"][7:]], (ALERT_RULES,)) as prom:
        # Three scrapes of the zero series: the rules were evaluated on it several times.
        scrapes = await prom.value_when(f"max(count_over_time({lapsed}[1m]))", 3, at_least=True)
        before = await prom.alert_state("PhiProxyLapsedGrantUse")
        bodies = await _read(served, "carol", 1)
        fired = await prom.alert_when("PhiProxyLapsedGrantUse", "firing")
        quiet = await prom.alert_state("PhiProxyGrantStoreDown")
    assert scrapes >= 3
    assert before is None
    assert bodies[0]["ssn"] == "***-**-9999"
    assert fired == "firing"
    assert quiet is None

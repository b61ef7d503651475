"""SCIM deprovisioning in a fleet: two `phi-proxy serve` replicas on one PostgreSQL grant store.

The SCIM listener runs beside them on the same store (as a dedicated SCIM instance would); an
IdP's `active: false` reaches both replicas through the store's change notification.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scim"))

import aiohttp
import pytest
import yaml
from aiohttp.test_utils import TestServer
from fleet_harness import ISSUER, MASKED, PRACTICE
from grants_pg import DSN
from scim_helpers import SECRET, ScimClient
from test_fleet import NOTIFIED, warm

from proxy.scim.app import build_scim_app
from proxy.settings import load_settings

pytestmark = [pytest.mark.asyncio, pytest.mark.postgres, pytest.mark.slow]


def _scim_settings(fleet):
    path = fleet.write_config("scim", DSN)
    config = yaml.safe_load(path.read_text())
    secret = fleet.folder / "scim.secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    config["scim"] = {
        "enabled": True,
        "port": 0,
        "secret_file": "./scim.secret",
        "issuer": ISSUER,
        "groups": {"Ward 4": {"practice": PRACTICE, "ttl": "7d"}},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, load_settings(path)


class TestScimFleet:
    async def test_deactivation_masks_on_every_replica(self, fleet):
        """Group member reads on both replicas; after PATCH active=false both mask."""
        proxy_a, proxy_b = await fleet.proxy("a"), await fleet.proxy("b")
        config_path, settings = _scim_settings(fleet)
        server = TestServer(build_scim_app(settings, config_path=config_path), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as http:
                scim = ScimClient(http, str(server.make_url("/scim/v2")))
                user = await scim.create_user("nurse-7", "nurse7@ward4.example")
                await scim.create_group("Ward 4", [user["id"]])
                await warm(fleet, proxy_a, "nurse-7")
                await warm(fleet, proxy_b, "nurse-7")
                marks = len(proxy_a.lines), len(proxy_b.lines)
                status, _ = await scim.patch(
                    "Users", user["id"], {"op": "replace", "path": "active", "value": False}
                )
                assert status == 200
                await proxy_a.wait_log(NOTIFIED, after=marks[0])
                await proxy_b.wait_log(NOTIFIED, after=marks[1])
                assert await fleet.ssn_seen_by(proxy_a, "nurse-7") == MASKED
                assert await fleet.ssn_seen_by(proxy_b, "nurse-7") == MASKED
        finally:
            await server.close()

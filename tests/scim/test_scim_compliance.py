"""scim2-tester, a SCIM compliance checker, finds no failure in what the listener claims.

It runs against the real listener with users mapped by externalId (the default). The checker
renames users (userName), which that mapping allows; the attribute that names the subject is
immutable by design (see proxy.scim.users), so the checker never sets it.
"""

from __future__ import annotations

import asyncio

from scim_helpers import SECRET


def _run_checker(base_url: str) -> list:
    from httpx2 import Client
    from scim2_client.engines.httpx2 import SyncSCIMClient
    from scim2_tester import Status, check_server

    with Client(base_url=base_url, headers={"Authorization": f"Bearer {SECRET}"}) as http:
        results = check_server(SyncSCIMClient(http))
    return [r for r in results if r.status == Status.ERROR], results


class TestCompliance:
    async def test_scim2_tester_reports_no_failure(self, scim_env):
        """Every check scim2-tester runs (discovery, CRUD of users and groups) passes."""
        _env, scim = scim_env
        failures, results = await asyncio.to_thread(_run_checker, scim.base)
        assert results
        assert [(r.title, r.reason) for r in failures] == []

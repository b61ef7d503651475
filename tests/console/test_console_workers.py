"""With `phi-proxy serve --workers 2` a console login holds whichever worker answers."""

from __future__ import annotations

import json

import aiohttp
import pytest
import pytest_asyncio
from console_pages import log_in
from console_stack import assert_no_planted_phi_in_stderr, running_console

from proxy.console.session import SESSION_COOKIE

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory):
    async with running_console(tmp_path_factory.mktemp("workers"), workers=2) as running:
        yield running
    assert_no_planted_phi_in_stderr(running)


def _console_pids(stack, path: str) -> set[int]:
    pids = set()
    for line in stack.stderr.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("msg") == "console request" and event.get("path") == path:
                assert event["status"] == 200, event
                pids.add(event["pid"])
    return pids


async def test_a_session_sealed_by_one_worker_opens_in_the_other(page, stack):
    await log_in(page, stack, "/console/review")
    [cookie] = [c for c in await page.context.cookies() if c["name"] == SESSION_COOKIE]
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection, any worker, each time
    async with aiohttp.ClientSession(
        connector=connector, cookies={SESSION_COOKIE: cookie["value"]}
    ) as http:
        for _ in range(200):
            async with http.get(
                stack.console_url + "/console/grants", allow_redirects=False
            ) as response:
                assert response.status == 200  # never sent back to the login page
            if len(_console_pids(stack, "/console/grants")) == 2:
                break
    assert len(_console_pids(stack, "/console/grants")) == 2

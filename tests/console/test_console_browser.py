"""The console in a real browser: log in, revoke a grant, and what the proxy does next."""

from __future__ import annotations

import re

import orjson
import pytest
from console_pages import log_in
from console_stack import NOT_ADMIN

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

SSN = "900-44-1234"


class TestLoginAndRevoke:
    async def test_revoking_in_the_console_masks_the_very_next_proxied_request(self, page, stack):
        await stack.grant("alice", "practice-a")
        token = stack.encrypt("practice-a", "ssn", SSN)
        stack.portal.script(
            "/api/practices/practice-a/patients/1",
            orjson.dumps({"id": 1, "practice_id": "practice-a", "ssn": token}),
        )
        status, body = await stack.proxied("/api/practices/practice-a/patients/1", "alice")
        assert status == 200
        assert orjson.loads(body)["ssn"] == SSN

        await log_in(page, stack)
        await page.get_by_label("Practice", exact=True).select_option("practice-a")
        await page.get_by_role("button", name="Show").click()
        row = page.get_by_role("row").filter(has_text="alice")
        await row.get_by_role("link", name=re.compile("^Revoke")).click()
        await page.get_by_label(re.compile("^Reason")).fill("left the practice in November")
        await page.get_by_role("button", name="Continue…").click()
        await page.get_by_role("button", name="Confirm: revoke").click()
        await page.get_by_role("status").filter(has_text="revoked").wait_for()

        status, body = await stack.proxied("/api/practices/practice-a/patients/1", "alice")
        assert status == 200
        assert SSN.encode() not in body
        assert orjson.loads(body)["ssn"] == "***-**-1234"

    async def test_a_person_without_the_admin_role_is_refused_at_login(self, page, stack):
        stack.idp.user = NOT_ADMIN
        await page.goto(stack.console_url + "/console/grants")
        await page.get_by_role("link", name="Log in").click()
        await page.get_by_role("heading", name="You are not a console administrator").wait_for()
        response = await page.goto(stack.console_url + "/console/grants")
        assert response is not None
        assert page.url.startswith(stack.console_url + "/console/login")

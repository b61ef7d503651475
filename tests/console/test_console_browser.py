"""The console in a real browser: log in, revoke a grant, and what the proxy does next."""

from __future__ import annotations

import re

import aiohttp
import orjson
import pytest
from console_pages import log_in
from console_stack import NOT_ADMIN
from playwright.async_api import expect

from proxy.console.headers import CONTENT_SECURITY_POLICY
from proxy.console.session import SESSION_COOKIE
from proxy.grants import open_grant_store

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


class TestLogout:
    async def test_logging_out_ends_the_session_in_this_browser(self, page, stack):
        await log_in(page, stack)
        await page.get_by_role("button", name="Log out").click()
        await page.get_by_role("status").filter(has_text="You have logged out").wait_for()
        assert SESSION_COOKIE not in {c["name"] for c in await page.context.cookies()}
        await page.goto(stack.console_url + "/console/review")
        assert page.url.startswith(stack.console_url + "/console/login?next=")

    async def test_a_grant_filter_takes_part_of_a_name(self, page, stack):
        await stack.grant("quentin.blake", "practice-c")
        await log_in(page, stack)
        await page.get_by_label(re.compile("^Person")).fill("quentin")
        await page.get_by_role("button", name="Show").click()
        rows = page.locator("#grants tbody tr")
        assert await rows.count() == 1
        assert "quentin.blake" in await rows.first.inner_text()

    async def test_logging_out_after_the_session_ended_still_drops_the_cookie(self, page, stack):
        await log_in(page, stack)
        await page.context.clear_cookies()  # as when the session cookie expired
        await page.get_by_role("button", name="Log out").click()
        await page.get_by_role("status").filter(has_text="You have logged out").wait_for()


class TestSecurityHeadersAndPorts:
    async def test_every_console_answer_carries_the_csp_and_security_headers(self, page, stack):
        await log_in(page, stack)
        for path in (
            "/console/login",
            "/console/grants",
            "/console/review",
            "/console/static/console.css",
            "/console/static/console.js",
            "/console/no-such-page",
        ):
            response = await page.request.get(stack.console_url + path, max_redirects=0)
            headers = response.headers
            assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY, path
            assert "'unsafe-inline'" not in headers["content-security-policy"]
            assert "frame-ancestors 'none'" in headers["content-security-policy"]
            assert headers["x-content-type-options"] == "nosniff", path
            assert headers["cache-control"] == "no-store", path
            assert headers["referrer-policy"] == "same-origin", path

    async def test_no_page_has_inline_script_or_style(self, page, stack):
        await log_in(page, stack)
        for path in ("/console/grants", "/console/review", "/console/grants/offboard"):
            await page.goto(stack.console_url + path)
            html = await page.content()
            assert "<script>" not in html
            assert " style=" not in html
            assert await page.locator("script:not([src])").count() == 0
            assert await page.locator("style").count() == 0

    async def test_the_console_is_not_served_on_the_client_or_health_port(self, stack):
        async with aiohttp.ClientSession() as http:
            async with http.get(stack.proxy_url + "/console/grants") as response:
                body = await response.read()
                assert b"access console" not in body
                assert "Content-Security-Policy" not in response.headers
                assert SESSION_COOKIE not in response.headers.getall("Set-Cookie", [""])[0]
            async with http.get(stack.proxy_url + "/console/login/start") as response:
                assert "Location" not in response.headers
                assert b"access console" not in await response.read()
            async with http.get(stack.admin_url + "/console/grants") as response:
                assert response.status == 404
        assert stack.portal.received[-1].path_qs == "/console/login/start"  # just a portal path


class TestKeyboardAndTablet:
    async def test_a_grant_can_be_revoked_with_the_keyboard_alone(self, page, stack):
        await stack.grant("kim", "practice-b")
        await log_in(page, stack, "/console/grants")
        await page.goto(stack.console_url + "/console/grants?practice=practice-b")
        target = "Revoke grant of https://idp.test.invalid|kim at practice-b"
        for _ in range(60):
            await page.keyboard.press("Tab")
            label = await page.evaluate("document.activeElement.getAttribute('aria-label')")
            if label == target:
                break
        else:
            pytest.fail("Tab never reached kim's Revoke link")
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none"  # a visible focus ring
        await page.keyboard.press("Enter")
        await page.wait_for_url(re.compile(r".*/revoke$"))
        while await page.evaluate("document.activeElement.id") != "reason":
            await page.keyboard.press("Tab")
        await page.keyboard.type("moved to another clinic")
        await page.keyboard.press("Enter")
        # autofocus lands at the browser's next rendering step, after the button is visible
        await expect(page.get_by_role("button", name="Confirm: revoke")).to_be_focused()
        await page.keyboard.press("Enter")
        await page.get_by_role("status").filter(has_text="revoked").wait_for()
        store = open_grant_store(stack.settings.grants)
        try:
            kims = [g for g in await store.list() if g.subject == stack.subject("kim")]
        finally:
            await store.close()
        assert [g.revoke_reason for g in kims] == ["moved to another clinic"]

    async def test_the_grants_page_fits_a_tablet_and_its_actions_are_reachable(
        self, browser, stack
    ):
        await stack.grant("tara", "practice-c")
        context = await browser.new_context(viewport={"width": 820, "height": 1180})
        try:
            page = await context.new_page()
            await log_in(page, stack)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 820
            await page.goto(stack.console_url + "/console/review")
            assert await page.evaluate("document.documentElement.scrollWidth") <= 820
            await page.goto(stack.console_url + "/console/grants")
            row = page.get_by_role("row").filter(has_text="tara")
            for name in ("^Renew", "^Revoke"):  # on screen without scrolling sideways
                box = await row.get_by_role("link", name=re.compile(name)).bounding_box()
                assert box is not None
                assert box["x"] + box["width"] <= 820
            await row.get_by_role("link", name=re.compile("^Renew")).click()
            await page.get_by_label("New grant lasts").wait_for()
        finally:
            await context.close()


UNLABELLED = """() => Array.from(document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]'))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !(el.textContent || '').trim())
  .map(el => el.outerHTML)"""


class TestAccessibility:
    async def test_every_control_on_every_page_has_a_label(self, page, stack):
        grant = await stack.grant("wren", "practice-a")
        await page.goto(stack.console_url + "/console/login")
        assert await page.evaluate(UNLABELLED) == []
        await log_in(page, stack)
        for path in (
            "/console/grants",
            "/console/review",
            "/console/grants/offboard?subject=wren",
            f"/console/grants/{grant.id}/revoke",
            f"/console/grants/{grant.id}/renew",
        ):
            await page.goto(stack.console_url + path)
            assert await page.evaluate(UNLABELLED) == [], path
            assert await page.locator("h1").count() == 1, path
            assert await page.evaluate("document.documentElement.lang") == "en"


class TestAttacksInTheBrowser:
    async def test_markup_in_a_grant_reason_is_shown_as_text_and_never_runs(self, page, stack):
        payload = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
        await stack.grant("xavier", "practice-b", reason=payload)
        await log_in(page, stack, "/console/grants")
        await page.goto(stack.console_url + "/console/grants?subject=xavier")
        row = page.locator("#grants tbody tr").filter(has_text="xavier")
        assert payload in await row.inner_text()
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("#grants img").count() == 0

    async def test_another_origin_cannot_frame_the_console(self, page, stack):
        # The login page needs no session, so only frame-ancestors can keep it out of the frame.
        stack.portal.script(
            "/framer",
            f'<iframe id="f" src="{stack.console_url}/console/login"></iframe><p>framer</p>',
            content_type="text/html",
        )
        await page.goto(stack.proxy_url + "/framer", wait_until="load")  # frames loaded too
        await page.get_by_text("framer").wait_for()
        frame = page.frame_locator("#f")
        assert await frame.get_by_role("heading", name="Access review console").count() == 0
        direct = await page.goto(stack.console_url + "/console/login")
        assert direct is not None
        assert direct.ok
        assert await page.get_by_role("heading", name="Access review console").count() == 1

    async def test_a_form_posted_from_another_origin_changes_nothing(self, page, stack):
        grant = await stack.grant("yara", "practice-a")
        await log_in(page, stack)
        target = f"{stack.console_url}/console/grants/{grant.id}/revoke"
        stack.portal.script(
            "/attack",
            f'<form id="a" method="post" action="{target}">'
            '<input name="reason" value="forged by another site"><input name="confirm" '
            'value="yes"></form><script>document.getElementById("a").submit()</script>',
            content_type="text/html",
        )
        await page.goto(stack.proxy_url + "/attack")
        await page.get_by_role("heading", name="This request was refused").wait_for()
        store = open_grant_store(stack.settings.grants)
        try:
            [yaras] = [g for g in await store.list() if g.id == grant.id]
        finally:
            await store.close()
        assert yaras.revoked_at is None

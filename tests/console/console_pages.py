"""Browser steps shared by the console tests (and the screenshot script)."""

from __future__ import annotations

import re


async def log_in(page, stack, path: str = "/console/grants") -> None:
    """Open a console page, follow the login through the test IdP, and land on that page."""
    await page.goto(stack.console_url + path)
    await page.get_by_role("link", name="Log in").click()
    await page.wait_for_url(re.compile(re.escape(stack.console_url + path)))


async def csrf_of(page) -> str:
    """The CSRF secret of the logged-in page (the hidden field of the logout form)."""
    return await page.locator("form.logout input[name=csrf]").get_attribute("value")

"""Fixtures of the console tests: the real stack (console_stack) and a real browser.

The browser is Debian's chromium driven by Playwright, launched once per xdist worker. Without
chromium (or the playwright package) the browser tests skip saying why, and fail instead when
PHI_TEST_REQUIRE_CHROMIUM=1 (CI: scripts/test-chromium installs it).
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "blackbox"))

from console_stack import (
    ADMIN,
    CHROMIUM,
    REQUIRE_CHROMIUM,
    assert_no_planted_phi_in_stderr,
    chromium_missing,
    running_console,
)


def require_chromium() -> None:
    """Skip (or fail under PHI_TEST_REQUIRE_CHROMIUM=1) when the browser cannot run here."""
    reason = chromium_missing()
    if reason is None:
        return
    if os.environ.get(REQUIRE_CHROMIUM) == "1":
        pytest.fail(f"{reason} ({REQUIRE_CHROMIUM}=1 requires it)", pytrace=False)
    pytest.skip(f"{reason}; CI sets {REQUIRE_CHROMIUM}=1 to make this a failure")


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(tmp_path_factory):
    """One chromium per xdist worker (each test gets its own context: no shared cookies)."""
    require_chromium()
    from playwright.async_api import async_playwright

    downloads = tmp_path_factory.mktemp("downloads")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            downloads_path=downloads,
            # No GPU here: without these chromium emulates one in software (CPU for nothing).
            args=["--disable-gpu", "--disable-software-rasterizer"],
        )
        yield launched
        await launched.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory):
    """The console stack for one test module (tests use people of their own).

    Afterwards, no PHI value a test planted appears in the proxy's log (its stderr).
    """
    async with running_console(tmp_path_factory.mktemp("console")) as running:
        yield running
    assert_no_planted_phi_in_stderr(running)


@pytest_asyncio.fixture(loop_scope="session")
async def page(browser, stack):
    """A fresh browser context and page at 1280x800 (no cookies from other tests)."""
    stack.idp.user = ADMIN
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    opened = await context.new_page()
    yield opened
    await context.close()


@pytest.fixture(autouse=True)
def _log_level(caplog):
    caplog.set_level(logging.INFO)

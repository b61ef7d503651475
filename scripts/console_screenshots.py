"""Regenerate docs/console/*.png: one screenshot per console view (`make console-screenshots`).

Starts the same stack as tests/console (a portal, the test OIDC provider, `phi-proxy serve`
with the console) in a temporary folder, adds made-up grants for made-up people, logs in
through the pages in Debian's chromium and photographs every view named in proxy.console.nav
(the one list of views), plus the confirmation step of a revoke. Synthetic data only.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "console"))

from console_pages import log_in  # noqa: E402
from console_stack import CHROMIUM, chromium_missing, running_console  # noqa: E402
from evidence_seed import BREAK_GLASS, seed_evidence, shoot_evidence  # noqa: E402

from proxy.console.nav import NAV  # noqa: E402

OUT = ROOT / "docs" / "console"
DESKTOP = {"width": 1280, "height": 800}
TABLET = {"width": 820, "height": 1180}

#: (person, practice, fields or None for all, lifetime in days, created days ago)
GRANTS = (
    ("alice.nguyen", "practice-a", None, 30, 2),
    ("ben.okafor", "practice-a", frozenset({"ssn", "insurance_id"}), 85, 75),
    ("carmen.diaz", "practice-b", None, 88, 1),
    ("carmen.diaz", "practice-c", frozenset({"history"}), 60, 3),
    ("dev.patel", "practice-b", None, 45, 20),
    ("erin.walsh", "practice-c", None, 30, 27),
    ("farid.haddad", "practice-a", frozenset({"ssn"}), 20, 5),
)


#: (patient id, practice, made-up name, SSN in the never-issued 9xx range)
PATIENTS = (
    (1, "practice-a", "Ada Sample", "900-01-1111"),
    (2, "practice-b", "Bo Example", "900-02-2222"),
)
#: Who reads which patient through the proxy (audited disclosures: last use, incidents).
READS = (("alice.nguyen", 1, "practice-a"), ("dev.patel", 2, "practice-b"))


async def seed(stack: Any) -> None:  # noqa: ANN401 - tests/console ConsoleStack
    """Made-up grants (expiring soon, long-lived, two practices), reads, one break-glass use."""
    for patient, practice, name, ssn in PATIENTS:
        body = json.dumps(
            {
                "id": patient,
                "practice_id": practice,
                "name": name,
                "ssn": stack.encrypt(practice, "ssn", ssn),
            }
        )
        stack.portal.script(f"/api/practices/{practice}/patients/{patient}", body)
    for person, practice, fields, days, ago in GRANTS:
        await stack.grant(
            person,
            practice,
            fields=fields,
            days=days,
            created_days_ago=ago,
            by="https://idp.example.org|it-helpdesk",
            reason="new staff member, ticket HR-2291",
        )
    for person, patient, practice in READS:
        await stack.proxied(f"/api/practices/{practice}/patients/{patient}", person)
    await stack.break_glass(
        "gina.rossi",
        "practice-c",
        reason="patient arrived unconscious at the ER; allergy history needed",
        days_ago=4,
    )


async def shoot(page: Any, name: str) -> None:  # noqa: ANN401 - a Playwright page
    """A full-page PNG of `page` in docs/console/."""
    await page.screenshot(path=str(OUT / name), full_page=True)
    print(f"wrote docs/console/{name}")


async def main() -> int:
    """Start the stack, take every screenshot; 1 when chromium is missing."""
    missing = chromium_missing()
    if missing:
        print(f"console-screenshots: {missing}", file=sys.stderr)
        return 1
    from playwright.async_api import async_playwright  # noqa: PLC0415

    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="phi-console-shots-") as folder:
        async with (
            running_console(Path(folder), overrides={"break_glass": BREAK_GLASS}) as stack,
            async_playwright() as playwright,
        ):
            await seed(stack)
            incident = await seed_evidence(stack)
            browser = await playwright.chromium.launch(executable_path=CHROMIUM)
            page = await browser.new_page(viewport=DESKTOP)
            await page.goto(stack.console_url + "/console/login")
            await shoot(page, "login.png")
            await log_in(page, stack)
            for item in NAV:
                await page.goto(stack.console_url + item.path)
                await shoot(page, item.screenshot)
            await page.goto(stack.console_url + "/console/grants")
            row = page.get_by_role("row").filter(has_text="ben.okafor")
            await row.get_by_role("link", name=re.compile("^Revoke")).click()
            await page.get_by_label(re.compile("^Reason")).fill("left the practice on 30 November")
            await page.get_by_role("button", name="Continue…").click()
            await shoot(page, "grants-confirm-revoke.png")
            await page.goto(stack.console_url + "/console/grants/offboard?subject=carmen")
            await page.get_by_role("link", name="carmen.diaz").click()
            await page.get_by_label("Reason (required)").fill("left the group on 30 November")
            await page.get_by_role("button", name="Continue…").click()
            await shoot(page, "offboard-confirm.png")
            grants_tablet = await browser.new_page(viewport=TABLET)
            await log_in(grants_tablet, stack)
            await shoot(grants_tablet, "grants-tablet.png")

            tablet = await browser.new_page(viewport=TABLET)
            await log_in(tablet, stack, "/console/review")
            await shoot(tablet, "review-tablet.png")
            await shoot_evidence(page, tablet, stack, incident, shoot)
            await browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

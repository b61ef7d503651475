"""The break-glass queue and the incident view in a real browser, against a real proxy process.

A medic breaks the glass through the proxy's client port; the officer signs the use off in the
console, and `phi-grants review` (a real process) no longer lists it while the audit trail
names the officer. The incident CSV downloaded through the page is compared byte for byte with
`phi-audit report` run as a process over the same trail; a tampered trail is shown as such.
"""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import console_pages
import pytest
import pytest_asyncio
from console_stack import ADMIN, running_console
from evidence_seed import (
    BREAK_GLASS,
    break_glass_read,
    edit_first_event_of,
    patient,
    read,
    trail,
    until_in_trail,
)

from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

REASON = "unconscious patient in the ER, allergy history needed"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory):
    """The console stack with break-glass allowed (this module's own proxy process)."""
    folder = tmp_path_factory.mktemp("evidence")
    async with running_console(folder, overrides={"break_glass": dict(BREAK_GLASS)}) as running:
        yield running


async def log_in(page, stack, path: str, **query: str) -> None:
    """Log in through the test IdP from a console page, then open it with `query`."""
    await console_pages.log_in(page, stack, path)
    if query:
        await page.goto(stack.console_url + path + "?" + urlencode(query))


def _cli(module: str, stack, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", module, "-c", str(stack.config_path), *args]
    return run_cli(argv, timeout=120, check=False)


class TestBreakGlassQueue:
    async def test_signing_off_in_the_console_clears_the_review_and_is_audited(self, page, stack):
        """The use shows its reason and record; the keyboard sign-off is final and audited."""
        request_id = await break_glass_read(stack, "medic", "practice-a", "bg-1", REASON)
        await until_in_trail(stack, {request_id})
        review = json.loads(_cli("proxy.grants", stack, "review", "--json", "--skip-usage").stdout)
        [pending] = review["break_glass"]["awaiting_signoff"]

        await log_in(page, stack, "/console/break-glass")
        use = page.get_by_role("article", name=re.compile("^medic at practice-a"))
        await use.get_by_text(REASON).wait_for()
        await use.get_by_role("cell", name="bg-1", exact=True).wait_for()
        await page.get_by_role("heading", name="Audit trail verified").wait_for()

        await use.get_by_role("link", name=re.compile("incident view")).click()
        await page.get_by_role("cell", name="bg-1", exact=True).wait_for()  # since it was opened
        await page.go_back()
        use = page.get_by_role("article", name=re.compile("^medic at practice-a"))
        note = use.get_by_label(re.compile("^Your note"))
        await note.focus()
        outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"  # visible focus
        await page.keyboard.type("ER admission 03:12 confirmed with the ward")
        await page.keyboard.press("Enter")
        await page.get_by_role("status").filter(has_text="Signed off").wait_for()
        assert await page.get_by_role("article").count() == 0

        review = json.loads(_cli("proxy.grants", stack, "review", "--json", "--skip-usage").stdout)
        assert review["break_glass"]["awaiting_signoff"] == []
        officer = str(stack.subject(ADMIN.sub))
        [event] = [e for e in trail(stack) if e.get("action") == "break_glass_signoff"]
        assert event["actor"] == officer
        assert event["details"]["grant_id"] == pending["id"]
        assert event["details"]["via"] == "console"
        assert event["details"]["note"] == "ER admission 03:12 confirmed with the ward"
        verified = _cli("proxy.audit", stack, "verify")
        assert verified.returncode == 0, verified.stderr

    async def test_a_short_note_or_an_unknown_use_signs_nothing_off(self, page, stack):
        """Checked on the server too (not only by the form's minlength): 422 and 404 pages."""
        request_id = await break_glass_read(stack, "medic-2", "practice-b", "bg-2", REASON)
        await until_in_trail(stack, {request_id})
        await log_in(page, stack, "/console/break-glass")
        form = page.get_by_role("form", name=re.compile("^Sign off medic-2 at practice-b"))
        action = await form.get_attribute("action")
        csrf = await console_pages.csrf_of(page)
        for path, note, status in ((action, "ok", 422), (action, "", 422)):
            response = await page.request.post(
                stack.console_url + path,
                form={"csrf": csrf, "note": note},
                headers={"Origin": stack.console_url},
            )
            assert response.status == status
            assert "A note is required to sign off" in await response.text()
        response = await page.request.post(
            stack.console_url + "/console/break-glass/bg_0000000000000000/acknowledge",
            form={"csrf": csrf, "note": "checked, fine"},
            headers={"Origin": stack.console_url},
        )
        assert response.status == 404
        review = json.loads(_cli("proxy.grants", stack, "review", "--json", "--skip-usage").stdout)
        assert [u["subject"] for u in review["break_glass"]["awaiting_signoff"]] == [
            str(stack.subject("medic-2"))
        ]


class TestIncidentView:
    async def test_the_downloaded_csv_is_what_phi_audit_report_prints(self, page, stack, tmp_path):
        """Form filled by label, verified trail shown, chart and table, CSV byte for byte."""
        await stack.grant("nina", "practice-a")
        await stack.grant("nina", "practice-b")
        ids = set()
        for practice, pid in (("practice-a", "n-1"), ("practice-a", "n-2"), ("practice-b", "n-3")):
            stack.portal.script(f"/api/patients/{pid}", patient(stack, practice, pid))
            ids.add(await read(stack, f"/api/patients/{pid}", stack.token("nina")))
        await until_in_trail(stack, ids)
        subject = str(stack.subject("nina"))

        await log_in(page, stack, "/console/incident")
        await page.get_by_label("Person, as the audit trail names them").fill(subject)
        await page.get_by_label("From (UTC)").fill("2020-01-01")
        await page.get_by_label("Until, not included (UTC)").fill("2100-01-01")
        await page.get_by_role("button", name="Show what they saw").click()
        await page.get_by_role("heading", name="Audit trail verified").wait_for()
        chart = page.get_by_role("img", name=re.compile("^Disclosures per day and practice"))
        await chart.wait_for()
        await page.get_by_role("columnheader", name="practice-b").wait_for()
        for record in ("n-1", "n-2", "n-3"):
            await page.get_by_role("cell", name=record, exact=True).wait_for()

        async with page.expect_download() as started:
            await page.get_by_role("link", name="Download the notification list (CSV)").click()
        download = await started.value
        saved = tmp_path / download.suggested_filename
        await download.save_as(saved)
        printed = _cli(
            "proxy.audit",
            stack,
            "report",
            "--subject",
            subject,
            "--since",
            "2020-01-01",
            "--until",
            "2100-01-01",
            "--format",
            "csv",
        )
        assert printed.returncode == 0, printed.stderr
        assert saved.read_bytes() == printed.stdout
        assert b"n-3" in printed.stdout
        assert download.suggested_filename.startswith("notification-list_nina_")

    async def test_a_wrong_date_is_explained_at_its_field(self, page, stack):
        """422, an alert naming the field, and the field marked invalid and described by it."""
        await log_in(page, stack, "/console/incident")
        await page.get_by_label("Person, as the audit trail names them").fill("idp|someone")
        since = page.get_by_label("From (UTC)")
        await since.fill("last tuesday")
        await page.get_by_role("button", name="Show what they saw").click()
        await page.get_by_role("alert").filter(has_text="is not a date or time").wait_for()
        assert await since.get_attribute("aria-invalid") == "true"
        assert "i-error" in (await since.get_attribute("aria-describedby") or "")
        assert await page.get_by_role("img").count() == 0  # nothing read for a wrong window

    async def test_at_tablet_width_nothing_scrolls_sideways(self, browser, stack):
        context = await browser.new_context(viewport={"width": 768, "height": 1024})
        page = await context.new_page()
        try:
            subject = str(stack.subject("nina"))
            await log_in(page, stack, "/console/incident", subject=subject)
            await page.get_by_role("img", name=re.compile("^Disclosures")).wait_for()
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0
        finally:
            await context.close()


@pytest_asyncio.fixture(scope="class", loop_scope="session")
async def own_stack(tmp_path_factory):
    """A console stack of its own: the test that edits its trail breaks no other test's."""
    async with running_console(tmp_path_factory.mktemp("tampered")) as running:
        yield running


class TestTamperedTrail:
    async def test_an_edited_trail_is_announced_and_what_was_read_still_shown(
        self, page, own_stack
    ):
        """The officer is told first, with the line; what the trail holds is still listed."""
        stack = own_stack
        await stack.grant("nina", "practice-a")
        ids = set()
        for pid in ("n-1", "n-2"):
            stack.portal.script(f"/api/patients/{pid}", patient(stack, "practice-a", pid))
            ids.add(await read(stack, f"/api/patients/{pid}", stack.token("nina")))
        await until_in_trail(stack, ids)
        path, line = edit_first_event_of(stack, str(stack.subject("nina")))
        subject = str(stack.subject("nina"))
        await log_in(page, stack, "/console/incident", subject=subject)
        alert = page.get_by_role("alert").filter(has_text="does NOT verify")
        await alert.wait_for()
        assert f"{path}:{line}:" in await alert.inner_text()
        await page.get_by_role("cell", name="n-1", exact=True).wait_for()

        link = page.get_by_role("link", name="Download the notification list (CSV)")
        response = await page.request.get(stack.console_url + await link.get_attribute("href"))
        assert response.headers["x-trail-verified"] == "no"
        printed = _cli("proxy.audit", stack, "report", "--subject", subject, "--format", "csv")
        assert printed.returncode == 1  # the command warns and exits 1, and still prints
        assert await response.body() == printed.stdout
        assert b"n-1" in printed.stdout

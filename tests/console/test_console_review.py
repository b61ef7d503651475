"""The access review and offboarding pages in a real browser, checked against `phi-grants`."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import orjson
import pytest
from console_pages import log_in
from console_stack import PHI_PROXY

from proxy.grants import open_grant_store
from tests.cli_process import run_cli_async

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

PHI_GRANTS = PHI_PROXY.parent / "phi-grants"


async def review_json(stack) -> dict:
    done = await run_cli_async([PHI_GRANTS, "review", "--json", "-c", stack.config_path])
    assert done.returncode in (0, 1), done.stderr.decode()
    return orjson.loads(done.stdout)


async def grants_of(stack, sub: str):
    store = open_grant_store(stack.settings.grants)
    try:
        return [g for g in await store.list() if g.subject == stack.subject(sub)]
    finally:
        await store.close()


class TestAccessReview:
    async def test_the_csv_export_says_what_phi_grants_review_json_says(self, page, stack):
        await stack.grant("rita", "practice-a", days=5)  # expires soon
        await stack.grant("rita", "practice-b", days=85)  # long-lived, several practices
        await stack.grant("sam", "practice-c", fields=frozenset({"ssn"}), days=40)
        await log_in(page, stack, "/console/review")
        async with page.expect_download() as info:
            await page.get_by_role("link", name="Download for sign-off (CSV)").click()
        download = await info.value
        text = Path(await download.path()).read_text(encoding="utf-8")  # noqa: ASYNC240
        assert re.fullmatch(r"access-review-\d{4}-\d{2}-\d{2}\.csv", download.suggested_filename)
        document = await review_json(stack)

        rows = list(csv.DictReader(io.StringIO(text)))
        by_grant = {r["grant_id"]: r for r in rows if r["state"]}
        general = [r for r in rows if not r["state"]]
        assert set(by_grant) == {g["id"] for g in document["grants"]}
        for grant in document["grants"]:
            row = by_grant[grant["id"]]
            assert row["subject"] == grant["subject"]
            assert row["practice"] == grant["practice"]
            assert row["expires_at"] == grant["expires_at"]
            assert row["created_by"] == grant["created_by"]
            assert row["reason"] == grant["reason"]
            assert row["fields"] == (
                "all" if grant["fields"] is None else " ".join(grant["fields"])
            )
            assert row["last_use"] == grant["last_use"]["status"]
            assert row["findings"].split("; ") == [f["code"] for f in grant["findings"]] or (
                row["findings"] == "" and not grant["findings"]
            )
        assert [r["findings"] for r in general] == [f["code"] for f in document["findings"]]
        codes = {c for r in rows for c in r["findings"].split("; ") if c}
        assert {"expires_soon", "long_lived", "several_practices"} <= codes

    async def test_an_expiring_grant_is_renewed_from_its_finding(self, page, stack):
        [old] = [g for g in await grants_of(stack, "rita") if g.practice == "practice-a"]
        await log_in(page, stack, "/console/review")
        row = page.get_by_role("row").filter(has_text="expires soon").filter(has_text="practice-a")
        await row.get_by_role("link", name="Renew…").click()
        await page.get_by_label("New grant lasts").select_option("30d")
        await page.get_by_label(re.compile("^Reason")).fill("still on staff, reviewed Q4")
        await page.get_by_role("button", name="Continue…").click()
        await page.get_by_role("button", name="Confirm: renew").click()
        await page.get_by_role("status").filter(has_text="renewed").wait_for()
        await page.get_by_role("link", name="Back to the access review").wait_for()
        renewed = [
            g for g in await grants_of(stack, "rita") if g.practice == "practice-a" and g != old
        ]
        assert len(renewed) == 1
        assert renewed[0].field_classes == old.field_classes
        assert renewed[0].reason == "still on staff, reviewed Q4"
        assert renewed[0].created_by == "https://idp.test.invalid|officer-olivia"
        trail = (stack.folder / "audit.jsonl").read_text()
        [event] = [orjson.loads(line) for line in trail.splitlines() if renewed[0].id in line]
        assert event["details"]["via"] == "console"
        assert event["details"]["renews"] == old.id

    async def test_a_person_is_offboarded_across_practices_after_confirming(self, page, stack):
        await stack.grant("uma", "practice-a")
        await stack.grant("uma", "practice-c")
        await log_in(page, stack)
        await page.get_by_role("link", name=re.compile("^Offboard a person")).click()
        await page.get_by_label(re.compile("^Person")).fill("um")  # part of the name
        await page.get_by_role("button", name="Look up").click()
        await page.get_by_role("link", name="uma", exact=True).click()
        await page.get_by_label("Reason (required)").fill("left the group on 30 November")
        await page.get_by_role("button", name="Continue…").click()
        assert await page.get_by_role("row").filter(has_text="uma").count() == 2
        assert all(g.revoked_at is None for g in await grants_of(stack, "uma"))
        await page.get_by_role("button", name="Confirm: offboard").click()
        await page.get_by_role("status").filter(has_text="2 grant(s) revoked").wait_for()
        assert all(g.revoked_at is not None for g in await grants_of(stack, "uma"))

    async def test_an_overdue_break_glass_use_is_a_finding_leading_to_its_sign_off(
        self, page, stack
    ):
        await stack.break_glass(
            "vic", "practice-b", reason="patient unconscious in the ER, chart needed", days_ago=4
        )
        await log_in(page, stack, "/console/review")
        row = page.get_by_role("row").filter(has_text="vic")
        assert "has not been signed off in time" in await row.inner_text()
        link = row.get_by_role("link", name="Sign off…")
        assert await link.get_attribute("href") == "/console/break-glass"
        await page.get_by_role("heading", name="Emergency access awaiting sign-off").wait_for()

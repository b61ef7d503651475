"""Break-glass uses and disclosures in a running console stack, for the tests and screenshots.

Reads go through the proxy's client port, so the proxy itself opens the break-glass grants and
writes the audit events. `backdated_reads` is for the screenshots only: the proxy can write only
today's events, so earlier days of an incident are request events appended with the audit
code's own writer (the same chain, file and lock the proxy and the CLIs use), dated back.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
import orjson

from proxy.audit import FileSink, open_chain
from proxy.audit.chain import canonical
from proxy.audit.events import iso_time

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from console_stack import ConsoleStack

#: The `break_glass:` section the evidence tests and screenshots run with.
BREAK_GLASS = {
    "enabled": True,
    "claim": "groups",
    "value": "phi-break-glass",
    "classes": ["ssn", "history"],
    "max_ttl": "1h",
    "max_per_day": 3,
    "signoff_within": "2d",
}
HEADER = "X-PHI-Break-Glass"
SSN = "900-71-2468"


def patient(stack: ConsoleStack, practice: str, pid: str) -> bytes:
    """A portal record of `practice` with an encrypted SSN (the value is planted PHI)."""
    return orjson.dumps(
        {"patient_id": pid, "practice_id": practice, "ssn": stack.encrypt(practice, "ssn", SSN)}
    )


async def read(stack: ConsoleStack, path: str, token: str, **headers: str) -> str:
    """GET `path` through the proxy's client port; the request id of the (200) answer."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            stack.proxy_url + path, headers={"Authorization": f"Bearer {token}", **headers}
        ) as response,
    ):
        assert response.status == 200, await response.text()
        await response.read()
        return response.headers["X-Request-Id"]


async def break_glass_read(
    stack: ConsoleStack, sub: str, practice: str, pid: str, reason: str
) -> str:
    """`sub` (holding the break-glass group) reads record `pid` of `practice` giving `reason`."""
    stack.portal.script(f"/api/patients/{pid}", patient(stack, practice, pid))
    token = stack.token(sub, groups=["staff", "phi-break-glass"])
    return await read(stack, f"/api/patients/{pid}", token, **{HEADER: reason})


def trail(stack: ConsoleStack) -> list[dict[str, Any]]:
    """Every event of the stack's audit trail (one file: the tests never rotate it)."""
    path = stack.folder / "audit.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


async def until_in_trail(stack: ConsoleStack, request_ids: set[str]) -> None:
    """Wait until the proxy process has written the events of `request_ids` (30 s bound)."""
    deadline = time.monotonic() + 30
    while not request_ids <= {e.get("request_id") for e in trail(stack)}:
        assert time.monotonic() < deadline, "the proxy never wrote the requests' audit events"
        await asyncio.sleep(0.02)


def edit_first_event_of(stack: ConsoleStack, subject: str) -> tuple[Path, int]:
    """Edit the first request event of `subject` (its MAC then fails); the file and line."""
    path = stack.folder / "audit.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    at = next(n for n, line in enumerate(lines) if orjson.loads(line).get("subject") == subject)
    event = orjson.loads(lines[at])
    event["status"] = 404
    lines[at] = canonical(event) + b"\n"
    path.write_bytes(b"".join(lines))
    return path, at + 1


def backdated_reads(
    stack: ConsoleStack, sub: str, reads: list[tuple[date, str, list[str]]]
) -> None:
    """Append request events of `sub` on earlier days: (day, practice, record ids) each."""
    settings = stack.settings.audit
    chain = open_chain(settings)
    sink = FileSink(settings.path, fsync=False)
    subject = str(stack.subject(sub))
    payloads = []
    for n, (day, practice, records) in enumerate(reads):
        moment = datetime(day.year, day.month, day.day, 9 + n % 8, 7 * n % 60, tzinfo=UTC)
        payloads.append(
            {
                "type": "request",
                "ts": iso_time(moment),
                "request_id": f"backdated-{n:04d}",
                "subject": subject,
                "method": "GET",
                "path": "/api/patients/{id}",
                "status": 200,
                "outcome": "forwarded",
                "decrypted": {"ssn": len(records)},
                "masked": {},
                "plaintext_kept": {},
                "encrypted": {},
                "practices": [practice],
                "grant_ids": [],
                "records": [
                    {"field_classes": ["ssn"], "practice": practice, "records": sorted(records)}
                ],
            }
        )
    sink.append(chain, payloads, ts=iso_time(datetime.now(UTC)), force_checkpoint=False)


async def seed_evidence(stack: ConsoleStack) -> dict[str, str]:
    """Two break-glass uses and a week of one person's reads; the incident page's query."""
    ids = {
        await break_glass_read(
            stack,
            "dr.maria.santos",
            "practice-a",
            "A-1042",
            "unconscious patient in the ER, allergy history needed",
        ),
        await break_glass_read(
            stack,
            "nurse.tom.berg",
            "practice-c",
            "C-2210",
            "night shift: on-call GP unreachable, medication check",
        ),
    }
    await until_in_trail(stack, ids)
    today = datetime.now(UTC).date()
    week = [today - timedelta(days=d) for d in range(9, 0, -1)]
    reads = []
    for n, day in enumerate(week):
        reads.append((day, "practice-b", [f"B-{1000 + n * 3 + k}" for k in range(1 + n % 4)]))
        if n % 3 == 1:
            reads.append((day, "practice-c", [f"C-{500 + n}", f"C-{600 + n}"]))
    backdated_reads(stack, "carmen.diaz", reads)
    return {
        "subject": str(stack.subject("carmen.diaz")),
        "since": week[0].isoformat(),
        "until": (today + timedelta(days=1)).isoformat(),
    }


async def shoot_evidence(
    page: Any,  # a logged-in Playwright page at 1280x800
    tablet: Any,  # a logged-in Playwright page at tablet size
    stack: ConsoleStack,
    query: dict[str, str],
    shoot: Callable[[Any, str], Awaitable[None]],
) -> None:
    """The break-glass queue after one sign-off, the incident view, and a tampered trail's.

    Last of the screenshots: it edits the trail.
    """
    await page.goto(stack.console_url + "/console/break-glass")
    use = page.get_by_role("article", name=re.compile("^nurse.tom.berg"))
    await use.get_by_label(re.compile("^Your note")).fill(
        "Confirmed with the on-call rota: GP unreachable 02:10-03:30; one record, as stated"
    )
    await use.get_by_role("button", name="Sign off (final)").click()
    await page.get_by_role("status").filter(has_text="Signed off").wait_for()
    await shoot(page, "break-glass.png")
    incident = stack.console_url + "/console/incident?" + urlencode(query)
    await page.goto(incident)
    await shoot(page, "incident.png")
    await tablet.goto(incident)
    await shoot(tablet, "incident-tablet.png")
    edit_first_event_of(stack, query["subject"])
    await page.goto(incident)
    await shoot(page, "incident-broken.png")

"""A site for `phi-grants review` tests: a config, a real grant store, a real audit trail.

Uniquely named (tests/ is not a package). Grants are added through the store's own `add` with a
back-dated `now`, and audit events are written by the real chain and file sink, exactly as the
proxy writes them, so the review reads what production would hold.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from keys.config_file import load_section
from proxy.audit import (
    AuditSettings,
    ChangeEvent,
    FileSink,
    RecordAccess,
    RequestEvent,
    open_chain,
)
from proxy.audit.events import iso_time
from proxy.grants import GrantRequest, SQLiteGrantStore
from proxy.identity import Subject
from tests.cli_process import run_cli

PHI_GRANTS = Path(sys.executable).with_name("phi-grants")
ALICE = Subject("https://login.a.test", "alice-sub")
BOB = Subject("https://login.a.test", "bob-sub")
MALLORY = Subject("https://login.a.test", "mallory-sub")
DAY = timedelta(days=1)


def now() -> datetime:
    return datetime.now(UTC)


def write_config(folder: Path, audit: str | None = "audit: {fsync: false}\n") -> Path:
    """A config whose SQLite grant store and audit trail sit beside it (max_ttl 90d)."""
    path = folder / "proxy.yaml"
    text = "grants:\n  store: grants.sqlite3\n  max_ttl: 90d\n"
    path.write_text(text + (audit or ""))
    return path


async def add_grant(
    store,
    subject: Subject = ALICE,
    practice: str = "pr-a",
    *,
    created: datetime,
    ttl: timedelta,
    fields: tuple[str, ...] | None = None,
):
    """Add a grant as if `phi-grants add` had run at `created`."""
    request = GrantRequest(
        subject=subject,
        practice=practice,
        field_classes=None if fields is None else frozenset(fields),
        expires_at=created + ttl,
        created_by="sec-officer",
        reason="ticket 4711",
    )
    return await store.add(request, now=created)


async def sqlite_grants(config: Path, *grants: dict):
    """Open the SQLite store beside `config`, add each grant (add_grant keywords), close it."""
    store = SQLiteGrantStore(config.parent / "grants.sqlite3")
    try:
        return [await add_grant(store, **grant) for grant in grants]
    finally:
        await store.close()


class Trail:
    """Writes request events into the config's audit trail with the real chain and sink."""

    def __init__(self, config: Path, sink=None) -> None:
        self.settings = load_section(config, "audit", AuditSettings)
        self.chain = open_chain(self.settings)
        self.sink = sink if sink is not None else FileSink(self.settings.path, fsync=False)
        self.count = 0

    def write(self, payload: dict, at: datetime) -> None:
        self.sink.append(self.chain, [payload], ts=iso_time(at), force_checkpoint=False)

    def start(self, at: datetime) -> None:
        """A proxy start event: the trail begins at `at`."""
        self.write(ChangeEvent("proxy", at, "start", None, {"pid": 1}).to_json(), at)

    def used(self, grant, at: datetime) -> None:
        """A request at `at` that decrypted an SSN through `grant`."""
        self.count += 1
        event = RequestEvent(
            ts=at,
            request_id=f"req-{self.count}",
            subject=str(grant.subject),
            client="10.0.4.7",
            method="GET",
            path="/api/patients/{id}",
            status=200,
            outcome="forwarded",
            decrypted={"ssn": 1},
            practices=(grant.practice,),
            grant_ids=(grant.id,),
            records=(RecordAccess(grant.practice, f"p-{self.count}", ("ssn",)),),
        )
        self.write(event.to_json(), at)

    def lapsed(self, subject: Subject, practice: str, at: datetime) -> None:
        """A request at `at` whose PHI was masked because `subject`'s grant had ended."""
        self.count += 1
        event = RequestEvent(
            ts=at,
            request_id=f"req-{self.count}",
            subject=str(subject),
            client="10.0.4.7",
            method="GET",
            path="/api/patients/{id}",
            status=200,
            outcome="forwarded",
            masked={"ssn": 1},
            practices=(practice,),
            lapsed_practices=(practice,),
        )
        self.write(event.to_json(), at)


def review(
    config: Path | None, *args: str, env_config: Path | None = None, config_after: bool = False
):
    """Run the installed `phi-grants [-c FILE] review [-c FILE] ARGS` as a real process."""
    env = {k: v for k, v in os.environ.items() if k not in {"SUDO_USER", "PHI_PROXY_CONFIG"}}
    if env_config is not None:
        env["PHI_PROXY_CONFIG"] = str(env_config)
    flag = [] if config is None else ["-c", str(config)]
    argv = [str(PHI_GRANTS), *([] if config_after else flag), "review"]
    argv += [*(flag if config_after else []), *args]
    return run_cli(argv, text=True, env=env, timeout=60, check=False)


def phi_audit(config: Path, *args: str):
    """Run `phi-audit -c FILE ARGS` as a real process, to compare the review with it."""
    argv = [sys.executable, "-m", "proxy.audit", "-c", str(config), *args]
    return run_cli(argv, text=True, timeout=60, check=False)


def review_json(config: Path, *args: str) -> tuple[int, dict]:
    """`phi-grants review --json`: the exit status and the parsed document."""
    result = review(config, "--json", *args)
    assert result.returncode in {0, 1}, result.stderr
    return result.returncode, json.loads(result.stdout)


def grant_entry(document: dict, grant_id: str) -> dict:
    """The review's entry for one grant id."""
    [entry] = [g for g in document["grants"] if g["id"] == grant_id]
    return entry


def codes(entry: dict) -> set[str]:
    """The finding codes of a review entry (a grant, or the whole document's own findings)."""
    return {f["code"] for f in entry["findings"]}


def sqlite_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of the grant tables, for before/after comparisons."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608
            for table in ("grants", "grant_events")
        }
    finally:
        conn.close()

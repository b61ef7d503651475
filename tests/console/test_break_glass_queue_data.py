"""The break-glass queue's data: uses from the grant store, disclosures from the verified trail.

Uses are opened by the store's own `open_break_glass` (as the proxy opens them); the trail is
written by the real audit code, and in the last class by a real proxy serving a break-glass
request. Sign-off (operations.sign_off, as the console's page calls it) is checked against
`phi-grants review` and the audit trail.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import pytest
from evidence_trails import append, phi_audit, request, tamper_subject, trail_events, write_config

from proxy.admin_api import operations
from proxy.admin_api.auth import AdminIdentity
from proxy.admin_api.handlers import ApiContext
from proxy.admin_api.operations import Actor
from proxy.console.break_glass_queue import MAX_REQUEST_IDS, load_queue
from proxy.grants import GrantNotFound, GrantRequest, SQLiteGrantStore
from proxy.identity.subject import Subject
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "blackbox"))

MEDIC = Subject("https://idp.test", "medic")
CLERK = Subject("https://idp.test", "clerk")
ADMIN = "https://idp.test|admin-ada"
REASON = "unconscious patient in the ER, allergies needed"
OPENED = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _emergency(subject=MEDIC, practice="practice-a", *, at=OPENED) -> GrantRequest:
    return GrantRequest(
        subject=subject,
        practice=practice,
        field_classes=frozenset({"ssn", "history"}),
        expires_at=at + timedelta(hours=1),
        created_by="break-glass",
        reason=REASON,
        not_before=at,
    )


def _glass(grant_id: str, outcome: str = "in_effect") -> dict:
    return {"outcome": outcome, "grant_ids": [grant_id], "reasons": [REASON]}


@pytest.fixture
async def store(tmp_path):
    opened = SQLiteGrantStore(tmp_path / "grants.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
def config(tmp_path):
    return write_config(tmp_path, "break_glass:\n  signoff_within: 2d\n")


async def _open(store, subject=MEDIC, practice="practice-a", at=OPENED) -> str:
    opened = await store.open_break_glass(
        _emergency(subject, practice, at=at), now=at, max_per_day=5
    )
    return opened.grant.id


class TestQueue:
    async def test_each_use_lists_the_records_disclosed_under_it(self, store, config):
        """Only events naming the use, of its subject, at its practice, count for it."""
        use = await _open(store)
        other = await _open(store, CLERK, "practice-b", OPENED + timedelta(minutes=1))
        medic, clerk = str(MEDIC), str(CLERK)
        append(
            config,
            [
                request(
                    "2026-03-01T08:01:00.000Z",
                    medic,
                    {"practice-a": {"p-1": ["ssn", "history"]}, "practice-z": {"z-1": ["ssn"]}},
                    break_glass=_glass(use, "granted") | {"reason": REASON},
                    request_id="r-1",
                ),
                request(
                    "2026-03-01T08:20:00.000Z",
                    medic,
                    {"practice-a": {"p-2": ["ssn"]}},
                    break_glass=_glass(use),
                    request_id="r-2",
                ),
                request("2026-03-01T08:30:00.000Z", medic, {"practice-a": {"p-7": ["ssn"]}}),
                request(  # another subject naming the use: not the medic's disclosure
                    "2026-03-01T08:40:00.000Z",
                    clerk,
                    {"practice-a": {"p-8": ["ssn"]}},
                    break_glass=_glass(use),
                ),
                request(
                    "2026-03-01T09:00:00.000Z",
                    clerk,
                    {"practice-b": {"b-1": ["history"]}},
                    break_glass=_glass(other, "granted"),
                ),
            ],
        )
        queue = await load_queue(store, config, now=OPENED + timedelta(hours=2))
        assert queue.verification is not None
        assert queue.verification.verified
        assert queue.signoff_within == timedelta(days=2)
        assert [e.grant.id for e in queue.awaiting] == [use, other]
        first = queue.awaiting[0]
        shown = [(r.practice, r.record, r.field_class, r.count) for r in first.disclosed]
        assert shown == [
            ("practice-a", "p-1", "history", 1),
            ("practice-a", "p-1", "ssn", 1),
            ("practice-a", "p-2", "ssn", 1),
        ]
        assert (first.requests, first.request_ids) == (2, ("r-1", "r-2"))
        assert first.first_request == "2026-03-01T08:01:00.000Z"
        assert first.last_request == "2026-03-01T08:20:00.000Z"
        assert first.records == 2
        assert first.state(OPENED + timedelta(hours=2)) == "ended"
        assert not first.overdue
        assert [r.record for r in queue.awaiting[1].disclosed] == ["b-1"]
        report = phi_audit(config, "report", "--subject", medic, "--practice", "practice-a")
        assert b"p-7" in report.stdout  # the report also has the ordinary read; the use does not
        assert "p-7" not in [r.record for r in first.disclosed]

    async def test_an_old_unacknowledged_use_is_overdue(self, store, config):
        await _open(store)
        queue = await load_queue(store, config, now=OPENED + timedelta(days=3))
        [entry] = queue.awaiting
        assert entry.overdue
        assert entry.disclosed == []
        assert queue.verification is not None
        assert queue.verification.state == "unreadable"  # no event written yet: no trail

    async def test_no_use_reads_no_trail(self, store, config):
        queue = await load_queue(store, config, now=OPENED)
        assert (queue.awaiting, queue.signed_off, queue.verification) == ([], [], None)

    async def test_a_tampered_trail_is_shown_broken_with_what_was_read(self, store, config):
        use = await _open(store)
        append(
            config,
            [
                request(
                    f"2026-03-01T08:0{n}:00.000Z",
                    str(MEDIC),
                    {"practice-a": {f"p-{n}": ["ssn"]}},
                    break_glass=_glass(use),
                )
                for n in range(1, 6)
            ],
        )
        path = tamper_subject(config, 3, str(MEDIC) + "x")
        queue = await load_queue(store, config, now=OPENED)
        assert queue.verification is not None
        assert queue.verification.state == "broken"
        assert (queue.verification.problem or "").startswith(f"{path}:3: ")
        assert [r.record for r in queue.awaiting[0].disclosed] == ["p-1", "p-3", "p-4", "p-5"]

    async def test_request_ids_are_capped_but_counted(self, store, config):
        use = await _open(store)
        count = MAX_REQUEST_IDS + 5
        append(
            config,
            [
                request(
                    "2026-03-01T08:05:00.000Z",
                    str(MEDIC),
                    {"practice-a": {"p-1": ["ssn"]}},
                    break_glass=_glass(use),
                    request_id=f"r-{n}",
                )
                for n in range(count)
            ],
        )
        [entry] = (await load_queue(store, config, now=OPENED)).awaiting
        assert entry.requests == count
        assert len(entry.request_ids) == MAX_REQUEST_IDS
        assert entry.disclosed[0].count == count


class TestSignedOffList:
    async def test_the_newest_sign_offs_are_listed_and_all_are_counted(self, store, config):
        """Newest sign-off first, at most `signed_off_shown`; the total counts every one."""
        ids = [
            await _open(store, practice=f"practice-{n}", at=OPENED + timedelta(minutes=n))
            for n in range(3)
        ]
        ids.append(await _open(store, CLERK, at=OPENED + timedelta(minutes=9)))
        for n, use in enumerate(ids[:3]):
            signed_at = OPENED + timedelta(hours=1, minutes=n)
            await store.sign_off_break_glass(use, by=ADMIN, note=f"checked {n}", now=signed_at)
        queue = await load_queue(store, config, now=OPENED + timedelta(hours=2), signed_off_shown=2)
        assert [e.grant.id for e in queue.awaiting] == [ids[3]]
        assert [e.grant.id for e in queue.signed_off] == [ids[2], ids[1]]
        assert queue.signed_off_total == 3


def _phi_grants(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "proxy.grants", "-c", str(config), *args]
    return run_cli(argv, text=True, timeout=60, check=False)


def _context(store, config: Path, now: datetime):
    """What operations.sign_off reads of the admin API's context: store, config, clock."""
    return ApiContext(settings=None, config_path=config, clock=lambda: now, store=store)


def _officer(request_id: str = "console-1") -> Actor:
    identity = AdminIdentity(Subject.parse(ADMIN), "jti-1")
    return Actor(identity, {"via": "console", "console_request": request_id, "token_id": "jti-1"})


class TestSignOff:
    """The console signs off through operations.sign_off (the admin API's function)."""

    async def test_a_sign_off_is_final_and_audited_with_the_admin_via_the_console(
        self, store, config
    ):
        use = await _open(store)
        append(config, [request("2026-03-01T08:05:00.000Z", str(MEDIC), {})])
        now = OPENED + timedelta(hours=3)
        context = _context(store, config, now)
        signed = await operations.sign_off(
            context, _officer(), use, note="ER admission 03:12 confirmed"
        )
        assert signed.signoff is not None
        assert (signed.signoff.by, signed.signoff.note) == (ADMIN, "ER admission 03:12 confirmed")
        [event] = [e for e in trail_events(config) if e.get("action") == "break_glass_signoff"]
        assert event["actor"] == ADMIN
        assert event["details"]["grant_id"] == use
        assert event["details"]["via"] == "console"
        assert event["details"]["console_request"] == "console-1"
        assert event["details"]["note"] == "ER admission 03:12 confirmed"
        verified = phi_audit(config, "verify")
        assert verified.returncode == 0, verified.stderr
        queue = await load_queue(store, config, now=now)
        assert queue.awaiting == []
        assert [e.grant.id for e in queue.signed_off] == [use]
        with pytest.raises(GrantNotFound, match="already signed off"):
            await operations.sign_off(context, _officer(), use, note="again")

    async def test_signed_off_but_not_audited_says_so(self, store, tmp_path, caplog):
        """The store keeps the sign-off; NotAudited carries the use, and an alert fires."""
        (tmp_path / "trail").mkdir()
        config = tmp_path / "config.yaml"
        config.write_text("audit:\n  fsync: false\n  path: trail\n")  # a folder: cannot append
        use = await _open(store)
        with pytest.raises(operations.NotAudited) as refused:
            await operations.sign_off(_context(store, config, OPENED), _officer(), use, note="ok")
        assert refused.value.use is not None
        assert refused.value.use.id == use
        assert "record it by hand" in str(refused.value.error)
        assert await store.break_glass_uses(pending_only=True) == []
        assert [r.msg for r in caplog.records if r.name == "phi_proxy.alert"] == [
            "admin_change_not_audited"
        ]


BREAK_GLASS = {
    "enabled": True,
    "claim": "groups",
    "value": "phi-break-glass",
    "classes": ["ssn", "history"],
    "max_ttl": "1h",
    "max_per_day": 2,
    "signoff_within": "2d",
}


class TestWithTheRealProxy:
    async def test_a_real_break_glass_read_appears_and_its_sign_off_leaves_the_review(
        self, tmp_path, caplog
    ):
        """The proxy opens the use and audits the read; the queue shows it; sign-off clears it."""
        from blackbox_env import assert_no_planted_phi_in, running_proxy_env, written

        caplog.set_level(logging.DEBUG)  # the access lines `written` waits for

        overrides = {"break_glass": dict(BREAK_GLASS), "audit": {"flush_interval": 20}}
        async with running_proxy_env(tmp_path, overrides=overrides) as env:
            record = {
                "patient_id": "p1",
                "practice_id": "practice-a",
                "ssn": env.encrypt("practice-a", "ssn", "900-12-3456"),
            }
            env.portal.script("/api/patients/p1", orjson.dumps(record))
            token = env.token("medic", groups=["staff", "phi-break-glass"])
            response = await env.get(
                "/api/patients/p1",
                headers={"Authorization": f"Bearer {token}", "X-PHI-Break-Glass": REASON},
            )
            assert response.status == 200
            await written(env)
            queue = await load_queue(env.grants, env.config_path, now=datetime.now(UTC))
            [entry] = queue.awaiting
            assert queue.verification is not None
            assert queue.verification.verified, queue.verification.summary()
            assert entry.grant.reason == REASON
            medic = str(env.subject("medic"))
            report = phi_audit(env.config_path, "report", "--subject", medic, "--format", "json")
            assert report.returncode == 0, report.stderr
            expected = [(r["record"], r["field_class"]) for r in json.loads(report.stdout)]
            assert [(r.record, r.field_class) for r in entry.disclosed] == expected
            assert expected  # the read disclosed something

            review = _phi_grants(env.config_path, "review", "--json", "--skip-usage")
            listed = json.loads(review.stdout)["break_glass"]["awaiting_signoff"]
            assert [u["id"] for u in listed] == [entry.grant.id]
            admin = str(env.subject("admin-ada"))
            context = _context(env.grants, env.config_path, datetime.now(UTC))
            officer = Actor(AdminIdentity(env.subject("admin-ada"), None), {"via": "console"})
            await operations.sign_off(
                context, officer, entry.grant.id, note="ER admission confirmed with the ward"
            )
            review = _phi_grants(env.config_path, "review", "--json", "--skip-usage")
            assert json.loads(review.stdout)["break_glass"]["awaiting_signoff"] == []
            [event] = [e for e in trail_events(env.config_path) if e.get("actor") == admin]
            assert (event["action"], event["details"]["via"]) == ("break_glass_signoff", "console")
            verified = phi_audit(env.config_path, "verify")
            assert verified.returncode == 0, verified.stderr
        assert_no_planted_phi_in(caplog.records)

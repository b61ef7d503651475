"""`phi-grants review`, black-box: a real store, a real audit trail, the installed command."""

import asyncio
import base64
import json
import os
import subprocess

import pytest
from grants_pg import DSN, drop_schema, new_schema, require_postgres
from review_helpers import (
    ALICE,
    BOB,
    DAY,
    MALLORY,
    PHI_GRANTS,
    Trail,
    add_grant,
    codes,
    grant_entry,
    now,
    phi_audit,
    review,
    review_json,
    sqlite_grants,
    sqlite_rows,
    write_config,
)

from proxy.grants import SQLiteGrantStore


@pytest.fixture
def config(tmp_path):
    """A config with an SQLite grant store and a file audit trail beside it."""
    return write_config(tmp_path)


class TestFindings:
    async def test_a_fresh_grant_used_yesterday_has_no_finding(self, config):
        """Used yesterday, 50 days left, 60-day lifetime: the review is clean and exits 0."""
        t = now()
        [grant] = await sqlite_grants(config, {"created": t - 10 * DAY, "ttl": 60 * DAY})
        trail = Trail(config)
        trail.start(t - 20 * DAY)
        trail.used(grant, t - DAY)

        result = review(config)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "No findings. Exit status 0." in result.stdout
        assert "(verified;" in result.stdout
        [row] = [line for line in result.stdout.splitlines() if grant.id in line]
        assert str(ALICE) in row
        assert (t - DAY).strftime("%Y-%m-%d") in row
        assert row.rstrip().endswith("-")  # no finding codes

        status, document = review_json(config)
        assert status == 0
        entry = grant_entry(document, grant.id)
        assert entry["findings"] == []
        assert entry["last_use"]["status"] == "used"
        assert entry["last_use"]["at"].startswith((t - DAY).strftime("%Y-%m-%dT%H:%M"))
        assert document["finding_count"] == 0

    async def test_a_grant_never_used_is_a_finding_with_the_revoke_command(self, config):
        """In effect for 40 days with no disclosure through it: never_used, exit 1."""
        t = now()
        used, unused = await sqlite_grants(
            config,
            {"created": t - 10 * DAY, "ttl": 60 * DAY},
            {"subject": BOB, "created": t - 40 * DAY, "ttl": 80 * DAY},
        )
        trail = Trail(config)
        trail.start(t - 50 * DAY)
        trail.used(used, t - DAY)

        result = review(config)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "NEVER USED [never_used]" in result.stdout
        assert f"revoke --id {unused.id} --reason 'access review: never used'" in result.stdout
        assert f"-c {config}" in result.stdout  # the suggested command works as pasted
        assert "Exit status 1" in result.stdout

        status, document = review_json(config)
        assert status == 1
        assert codes(grant_entry(document, unused.id)) == {"never_used"}
        assert codes(grant_entry(document, used.id)) == set()
        assert grant_entry(document, unused.id)["last_use"] == {
            "status": "none",
            "at": None,
            "trail_since": document["usage"]["since"],
        }

    async def test_a_grant_last_used_long_ago_is_unused(self, config):
        """Last disclosure 45 days ago, window 30d: unused; a 60d window accepts it."""
        t = now()
        [grant] = await sqlite_grants(config, {"created": t - 50 * DAY, "ttl": 80 * DAY})
        trail = Trail(config)
        trail.start(t - 60 * DAY)
        trail.used(grant, t - 45 * DAY)

        status, document = review_json(config)
        assert status == 1
        [finding] = grant_entry(document, grant.id)["findings"]
        assert finding["code"] == "unused"
        assert "45d ago" in finding["detail"]
        assert review(config, "--unused-for", "60d").returncode == 0

    async def test_a_young_unused_grant_is_not_yet_a_finding(self, config):
        """Granted 3 days ago and not used yet: shown as 'never', but too early to flag."""
        t = now()
        [grant] = await sqlite_grants(config, {"created": t - 3 * DAY, "ttl": 30 * DAY})
        Trail(config).start(t - 50 * DAY)
        status, document = review_json(config)
        assert status == 0
        assert grant_entry(document, grant.id)["last_use"]["status"] == "none"
        result = review(config)
        [row] = [line for line in result.stdout.splitlines() if grant.id in line]
        assert " never " in row

    async def test_a_grant_expiring_within_the_window_is_a_finding(self, config):
        """3 days left: expires_soon with a renew command; --expiring-within 2d accepts it."""
        t = now()
        [grant] = await sqlite_grants(
            config, {"created": t - 27 * DAY, "ttl": 30 * DAY, "fields": ("ssn", "history")}
        )
        trail = Trail(config)
        trail.start(t - 40 * DAY)
        trail.used(grant, t - DAY)

        result = review(config)
        assert result.returncode == 1
        assert "EXPIRES SOON [expires_soon]" in result.stdout
        assert "add --subject 'https://login.a.test|alice-sub' --practice pr-a" in result.stdout
        assert "--fields history,ssn" in result.stdout
        _, document = review_json(config)
        assert codes(grant_entry(document, grant.id)) == {"expires_soon"}
        assert review(config, "--expiring-within", "2d").returncode == 0

    async def test_long_lived_grants_and_several_practices(self, config):
        """An 89-day grant is long_lived; a person holding two practices is one finding."""
        t = now()
        a, b = await sqlite_grants(
            config,
            {"created": t - DAY, "ttl": 89 * DAY},
            {"practice": "pr-b", "created": t - DAY, "ttl": 30 * DAY},
        )
        trail = Trail(config)
        trail.start(t - 40 * DAY)
        trail.used(a, t - DAY / 2)
        trail.used(b, t - DAY / 2)

        status, document = review_json(config)
        assert status == 1
        assert codes(grant_entry(document, a.id)) == {"long_lived"}
        assert codes(grant_entry(document, b.id)) == set()
        [several] = document["findings"]
        assert several["code"] == "several_practices"
        assert several["subject"] == str(ALICE)
        assert (
            several["detail"]
            == f"{ALICE} holds grants at 2 practices: pr-a ({a.id}); pr-b ({b.id})."
        )
        assert document["finding_count"] == 2
        # A practice's reviewer sees the person's other practice too; others are not bothered.
        _, only_b = review_json(config, "--practice", "pr-b")
        assert codes(only_b) == {"several_practices"}
        _, elsewhere = review_json(config, "--practice", "pr-c")
        assert codes(elsewhere) == set()

    async def test_requests_after_a_grant_ended_are_a_finding(self, config):
        """A revoked person still asking for PHI (lapsed_practices in the trail) is reported."""
        t = now()
        store = SQLiteGrantStore(config.parent / "grants.sqlite3")
        try:
            gone = await add_grant(store, MALLORY, created=t - 20 * DAY, ttl=60 * DAY)
            await store.revoke(grant_id=gone.id, by="ciso", reason="left", now=t - 5 * DAY)
        finally:
            await store.close()
        trail = Trail(config)
        trail.start(t - 30 * DAY)
        trail.lapsed(MALLORY, "pr-a", t - 2 * DAY)
        trail.lapsed(MALLORY, "pr-a", t - DAY)

        result = review(config)
        assert result.returncode == 1
        assert "No grant is in effect" in result.stdout  # the revoked grant is not listed
        assert "[used_after_lapse]" in result.stdout
        assert "disable the account at the identity provider" in result.stdout
        _, document = review_json(config)
        [finding] = document["findings"]
        assert (finding["code"], finding["subject"], finding["practice"]) == (
            "used_after_lapse",
            str(MALLORY),
            "pr-a",
        )
        assert finding["detail"].startswith("2 requests between")
        assert review(config, "--practice", "pr-b").returncode == 0

    async def test_a_tampered_trail_is_reported_not_trusted(self, config):
        """An edited audit line: the review says the trail does not verify, exit 1."""
        t = now()
        [grant] = await sqlite_grants(config, {"created": t - 10 * DAY, "ttl": 60 * DAY})
        trail = Trail(config)
        trail.start(t - 20 * DAY)
        trail.used(grant, t - DAY)
        audit = config.parent / "audit.jsonl"
        audit.write_text(audit.read_text().replace('"10.0.4.7"', '"10.0.4.8"'))

        result = review(config)
        assert result.returncode == 1
        assert "NOT VERIFIED" in result.stdout
        assert "[audit_unverified]" in result.stdout
        assert "phi-audit -c" in result.stdout


class TestNoAuditTrail:
    async def test_audit_disabled_means_last_use_unknown_and_said_so(self, tmp_path):
        """No trail: every last use is 'unknown', nothing is guessed, and that is a finding."""
        config = write_config(tmp_path, audit="audit: {enabled: false}\n")
        t = now()
        [grant] = await sqlite_grants(config, {"created": t - 40 * DAY, "ttl": 60 * DAY})

        result = review(config)
        assert result.returncode == 1
        assert "last use: UNKNOWN - audit.enabled is false" in result.stdout
        [row] = [line for line in result.stdout.splitlines() if grant.id in line]
        assert " unknown " in row
        assert "[usage_unknown]" in result.stdout
        assert "never_used" not in result.stdout

        _, document = review_json(config)
        assert document["usage"]["status"] == "unknown"
        assert grant_entry(document, grant.id)["last_use"]["status"] == "unknown"
        assert grant_entry(document, grant.id)["findings"] == []
        assert codes(document) == {"usage_unknown"}

    async def test_skip_usage_acknowledges_it(self, tmp_path):
        """--skip-usage: last use 'not checked', no finding for it."""
        config = write_config(tmp_path, audit="audit: {sink: stdout}\n")
        t = now()
        await sqlite_grants(config, {"created": t - 40 * DAY, "ttl": 60 * DAY})
        result = review(config, "--skip-usage")
        assert result.returncode == 0, result.stdout
        assert "last use: not checked (--skip-usage)" in result.stdout
        unknown = review(config)
        assert unknown.returncode == 1
        assert "audit.sink is stdout" in unknown.stdout

    async def test_a_missing_trail_is_unknown_and_no_audit_key_is_created(self, config):
        """The configured trail file does not exist: unknown, and the review creates nothing."""
        t = now()
        await sqlite_grants(config, {"created": t - 40 * DAY, "ttl": 60 * DAY})

        def audit_files():
            return sorted(p.name for p in config.parent.iterdir() if "sqlite3" not in p.name)

        before = audit_files()
        status, document = review_json(config)
        assert status == 1
        assert document["usage"]["status"] == "unknown"
        assert "no audit trail at" in document["usage"]["reason"]
        assert audit_files() == before == ["proxy.yaml"]
        assert not (config.parent / "audit.key").exists()


class TestScopeAndSafety:
    async def test_practice_filter(self, config):
        """--practice lists only that practice's grants, and says so."""
        t = now()
        a, b = await sqlite_grants(
            config,
            {"created": t - DAY, "ttl": 30 * DAY},
            {"subject": BOB, "practice": "pr-b", "created": t - DAY, "ttl": 30 * DAY},
        )
        Trail(config).start(t - 2 * DAY)
        status, document = review_json(config, "--practice", "pr-b")
        assert status == 0
        assert [g["id"] for g in document["grants"]] == [b.id]
        assert document["practice"] == "pr-b"
        result = review(config, "--practice", "pr-b")
        assert "1 grant(s) in effect at pr-b" in result.stdout
        assert a.id not in result.stdout
        empty = review(config, "--practice", "pr-zzz")
        assert empty.returncode == 0
        assert "No grant is in effect at pr-zzz" in empty.stdout

    async def test_json_shape(self, config):
        """The documented keys, with times as UTC ISO strings."""
        t = now()
        [grant] = await sqlite_grants(
            config, {"created": t - DAY, "ttl": 30 * DAY, "fields": ("ssn",)}
        )
        Trail(config).start(t - 2 * DAY)
        _, document = review_json(config)
        assert set(document) == {
            "generated_at",
            "practice",
            "store",
            "checks",
            "usage",
            "grants",
            "break_glass",
            "scim_unmapped_groups",
            "findings",
            "finding_count",
        }
        assert document["checks"] == {
            "expiring_within": "14d",
            "unused_for": "30d",
            "max_ttl": "90d",
            "long_lived_share": 0.9,
            "lapsed_lookback": "30d",
        }
        assert set(document["usage"]) == {"status", "source", "reason", "since", "notes"}
        assert document["usage"]["status"] == "verified"
        assert document["store"] == str(config.parent / "grants.sqlite3")
        entry = grant_entry(document, grant.id)
        assert set(entry) == {
            "id",
            "subject",
            "practice",
            "fields",
            "state",
            "not_before",
            "expires_at",
            "seconds_left",
            "created_at",
            "created_by",
            "reason",
            "last_use",
            "findings",
        }
        assert entry["subject"] == str(ALICE)
        assert entry["fields"] == ["ssn"]
        assert entry["state"] == "active"
        assert entry["created_by"] == "sec-officer"
        assert entry["expires_at"].endswith("Z")
        assert 28 * 86400 < entry["seconds_left"] <= 29 * 86400

    async def test_review_changes_nothing(self, config):
        """Grants, grant history and the audit trail are byte-for-byte the same afterwards."""
        t = now()
        [grant, _] = await sqlite_grants(
            config,
            {"created": t - 40 * DAY, "ttl": 50 * DAY},
            {"subject": BOB, "created": t - 40 * DAY, "ttl": 80 * DAY},
        )
        store = SQLiteGrantStore(config.parent / "grants.sqlite3")
        try:
            await store.revoke(grant_id=grant.id, by="ciso", reason="left", now=t - DAY)
        finally:
            await store.close()
        Trail(config).start(t - 50 * DAY)
        audit = config.parent / "audit.jsonl"
        before = sqlite_rows(config.parent / "grants.sqlite3"), audit.read_bytes()

        assert review(config).returncode == 1
        assert review(config, "--json", "--practice", "pr-a").returncode == 1
        assert review(config, "--skip-usage").returncode == 0

        after = sqlite_rows(config.parent / "grants.sqlite3"), audit.read_bytes()
        assert after == before
        assert len(before[0]["grant_events"]) == 3  # add, add, revoke

    def test_a_missing_grant_database_is_a_config_error_and_not_created(self, config):
        """Exit 2 naming the path; the review does not create an empty database."""
        result = review(config)
        assert result.returncode == 2
        assert "no grant database there" in result.stderr
        assert not (config.parent / "grants.sqlite3").exists()

    def test_bad_arguments_exit_2(self, config):
        """A bad duration is a usage error."""
        result = review(config, "--unused-for", "soon")
        assert result.returncode == 2
        assert "is not a duration" in result.stderr

    async def test_config_from_the_environment(self, config):
        """Without -c, PHI_PROXY_CONFIG names the config (suggested commands carry no -c)."""
        t = now()
        await sqlite_grants(config, {"created": t - 40 * DAY, "ttl": 60 * DAY})
        Trail(config).start(t - 50 * DAY)
        result = review(None, env_config=config)
        assert result.returncode == 1
        assert "phi-grants revoke --id" in result.stdout
        after = review(config, "--json", config_after=True)
        assert after.returncode == 1, after.stderr  # -c after the subcommand works too
        assert json.loads(after.stdout)["finding_count"] == 1

    def test_help_lists_review(self):
        """`phi-grants --help` names the command; its own help explains findings and exit codes."""
        main = subprocess.run(
            [str(PHI_GRANTS), "--help"], capture_output=True, text=True, timeout=60, check=True
        )
        assert "periodic access review" in main.stdout
        own = review(None, "--help")
        assert own.returncode == 0
        assert "exit status: 0 no finding, 1 findings" in own.stdout
        assert "never_used" in own.stdout


@pytest.mark.postgres
class TestPostgres:
    @pytest.fixture
    async def schemas(self):
        """A fresh grant schema and audit schema, dropped afterwards."""
        await require_postgres()
        names = new_schema(), new_schema()
        yield names
        for name in names:
            await drop_schema(name)

    async def fleet_site(self, tmp_path, schemas):
        """Grants and the audit trail both in PostgreSQL; returns (config, used, unused)."""
        from proxy.audit.postgres_sink import PostgresSink
        from proxy.grants.postgres_store import PostgresGrantStore

        grant_schema, audit_schema = schemas
        (tmp_path / "audit.key").write_text(base64.b64encode(os.urandom(32)).decode())
        (tmp_path / "audit.key").chmod(0o600)  # an audit key others may read is refused
        config = tmp_path / "proxy.yaml"
        config.write_text(
            f"grants: {{store: '{DSN}', pg_schema: {grant_schema}, max_ttl: 90d}}\n"
            f"audit: {{sink: postgres, dsn: '{DSN}', pg_schema: {audit_schema}}}\n"
        )
        t = now()
        store = PostgresGrantStore(DSN, schema=grant_schema, timeout=5.0)
        try:
            used = await add_grant(store, created=t - 10 * DAY, ttl=60 * DAY)
            unused = await add_grant(store, BOB, created=t - 40 * DAY, ttl=80 * DAY)
        finally:
            await store.close()
        sink = PostgresSink(DSN, schema=audit_schema)
        try:
            trail = Trail(config, sink=sink)
            trail.start(t - 50 * DAY)
            trail.used(used, t - DAY)
        finally:
            sink.close()
        return config, used, unused

    async def test_review_reads_grants_and_trail_from_postgresql(self, tmp_path, schemas):
        """The fleet setup: grants and the audit trail both in PostgreSQL."""
        config, used, unused = await self.fleet_site(tmp_path, schemas)

        status, document = review_json(config)
        assert status == 1
        assert document["usage"]["status"] == "verified"
        assert f"schema {schemas[1]}" in document["usage"]["source"]
        assert grant_entry(document, used.id)["last_use"]["status"] == "used"
        assert codes(grant_entry(document, used.id)) == set()
        assert codes(grant_entry(document, unused.id)) == {"never_used"}
        assert "127.0.0.1" in document["store"]
        assert "postgres@" not in document["store"]  # no user name in the output

    async def test_a_cut_off_database_trail_reads_as_phi_audit_says(self, tmp_path, schemas):
        """The newest event deleted behind audit_head: unverified, in phi-audit's own words."""
        import asyncpg

        config, _, _ = await self.fleet_site(tmp_path, schemas)
        conn = await asyncpg.connect(DSN, server_settings={"search_path": schemas[1]})
        try:  # as superuser, past the append-only triggers
            async with conn.transaction():
                await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER USER")
                await conn.execute("DELETE FROM audit_events WHERE seq = 3")
                await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER USER")
        finally:
            await conn.close()

        status, document = review_json(config)
        assert status == 1
        assert document["usage"]["status"] == "unverified"
        assert "audit_unverified" in codes(document)
        reason = document["usage"]["reason"]
        assert reason.endswith(
            "audit_head records seq 3 as written: the newest events were deleted"
        )
        audit = phi_audit(config, "verify")
        assert audit.returncode == 1
        where = reason.removeprefix("the audit trail does not verify: ")
        assert f"phi-audit: BROKEN: {where}\n" in audit.stderr

    async def test_a_schema_without_a_grant_store_is_a_config_error_and_not_created(
        self, tmp_path, schemas
    ):
        """A mistyped grants.pg_schema must not review as "0 grants, no findings" (exit 0)."""
        import asyncpg

        grant_schema, _ = schemas
        config = tmp_path / "proxy.yaml"
        config.write_text(
            f"grants: {{store: '{DSN}', pg_schema: {grant_schema}}}\naudit: {{enabled: false}}\n"
        )
        result = review(config, "--skip-usage")
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"schema {grant_schema} holds no grant store" in result.stderr
        assert "grants.pg_schema" in result.stderr
        for command in (["list"], ["offboard", "--subject", "https://i|x", "--reason", "left"]):
            refused = await asyncio.to_thread(
                subprocess.run,
                [str(PHI_GRANTS), "-c", str(config), *command],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert refused.returncode == 2, refused.stdout + refused.stderr
            assert f"schema {grant_schema} holds no grant store" in refused.stderr
        conn = await asyncpg.connect(DSN)
        try:
            created = await conn.fetchval(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1",
                grant_schema,
            )
        finally:
            await conn.close()
        assert created == 0, "a command created the schema it was asked to read"

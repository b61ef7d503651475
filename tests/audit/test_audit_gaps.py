"""Gaps a trail's readers must not hide: a lost oldest file, and disclosures without a record id."""

from __future__ import annotations

import csv
import io
import json

import orjson
import pytest
from audit_helpers import TS, now, phi_audit, settings_in, write_events, written

from proxy.audit.report import UNKNOWN_RECORD, ReportFilter, build_report, render_report
from proxy.grants.usage import read_usage

SSN = "555-12-0987"


@pytest.fixture
def rotated(tmp_path):
    """A configured trail of two files (seq 1..7 in audit.jsonl.1, 8..11 in audit.jsonl)."""
    config = tmp_path / "config.yaml"
    config.write_text("audit:\n  fsync: false\n")
    settings = settings_in(tmp_path, fsync=False)
    write_events(settings, 6)
    settings.path.rename(tmp_path / "audit.jsonl.1")
    write_events(settings, 3, start=6)
    return config


def drop_oldest(config):
    (config.parent / "audit.jsonl.1").unlink()
    return config.parent / "audit.jsonl"


MISSING = "the trail starts at seq 8: the files holding seq 1..7 are missing (deleted or moved)"


class TestOldestFileDeleted:
    def test_the_whole_rotated_trail_verifies(self, rotated):
        result = phi_audit("verify", config=rotated)
        assert result.returncode == 0, result.stderr
        assert "OK: 11 events (seq 1..11) in 2 file(s)" in result.stdout

    def test_verify_from_the_config_is_broken_naming_file_and_range(self, rotated):
        current = drop_oldest(rotated)
        result = phi_audit("verify", config=rotated)
        assert result.returncode == 1
        assert f"phi-audit: BROKEN: {current}:1: {MISSING}" in result.stderr
        assert "OK:" not in result.stdout

    def test_pruned_before_the_first_seq_acknowledges_retention(self, rotated):
        drop_oldest(rotated)
        result = phi_audit("verify", "--pruned-before", "8", config=rotated)
        assert result.returncode == 0, result.stderr
        assert "OK: 4 events (seq 8..11) in 1 file(s)" in result.stdout
        assert "note: the trail starts at seq 8: seq 1..7 were pruned" in result.stderr

    @pytest.mark.parametrize(
        ("given", "says"),
        [
            ("7", "not at seq 7 as --pruned-before says: the files holding seq 7..7 are missing"),
            ("9", "not at seq 9 as --pruned-before says: give the first seq"),
        ],
    )
    def test_a_pruned_before_that_does_not_match_is_still_broken(self, rotated, given, says):
        drop_oldest(rotated)
        result = phi_audit("verify", "--pruned-before", given, config=rotated)
        assert result.returncode == 1
        assert "BROKEN:" in result.stderr
        assert f"the trail starts at seq 8, {says}" in result.stderr

    def test_pruned_before_on_an_intact_trail_is_a_mismatch(self, rotated):
        result = phi_audit("verify", "--pruned-before", "8", config=rotated)
        assert result.returncode == 1
        assert "the trail starts at seq 1, not at seq 8" in result.stderr

    def test_pruned_before_is_a_sequence_number(self, rotated):
        result = phi_audit("verify", "--pruned-before", "0", config=rotated)
        assert result.returncode == 2
        assert "not a sequence number" in result.stderr

    def test_explicit_files_are_a_slice_verified_with_a_note(self, rotated):
        current = drop_oldest(rotated)
        result = phi_audit("verify", str(current), config=rotated)
        assert result.returncode == 0, result.stderr
        assert "note: the files given start at seq 8: seq 1..7 are in files not given" in (
            result.stderr
        )
        assert "verify without FILE arguments" in result.stderr

    def test_report_prints_but_warns_and_exits_1(self, rotated):
        current = drop_oldest(rotated)
        result = phi_audit("report", config=rotated)
        assert result.returncode == 1
        assert "0 record(s) disclosed" in result.stdout
        assert f"WARNING: the trail does not verify ({current}:1: {MISSING})" in result.stderr
        pruned = phi_audit("report", "--pruned-before", "8", config=rotated)
        assert pruned.returncode == 0, pruned.stderr

    def test_retention_recorded_in_the_config_is_honoured_by_every_reader(self, rotated):
        """audit.pruned_before: verify, report and the grant review accept the pruned start."""
        drop_oldest(rotated)
        rotated.write_text("audit:\n  fsync: false\n  pruned_before: 8\n")
        verified = phi_audit("verify", config=rotated)
        assert verified.returncode == 0, verified.stderr
        assert "OK: 4 events (seq 8..11)" in verified.stdout
        assert phi_audit("report", config=rotated).returncode == 0
        assert read_usage(rotated, now=now()).status == "verified"
        rotated.write_text("audit:\n  fsync: false\n  pruned_before: 5\n")
        assert phi_audit("verify", config=rotated).returncode == 1
        assert read_usage(rotated, now=now()).status == "unverified"

    def test_the_grant_review_reads_it_as_unverified(self, rotated):
        assert read_usage(rotated, now=now()).status == "verified"
        drop_oldest(rotated)
        usage = read_usage(rotated, now=now())
        assert usage.status == "unverified"
        assert usage.reason is not None
        assert MISSING in usage.reason


def request(**overrides):
    """A request event shaped as proxy/audit/requests.py writes it (line format 2)."""
    event = {
        "type": "request",
        "ts": TS,
        "request_id": "r1",
        "subject": "https://idp|mallory",
        "client": "10.0.0.1",
        "method": "GET",
        "path": "/api/chart",
        "status": 200,
        "outcome": "forwarded",
        "decrypted": {},
        "masked": {},
        "plaintext_kept": {},
        "encrypted": {},
        "practices": ["pa"],
        "grant_ids": ["g_1"],
        "records": [],
        "integrity_failures": 0,
        "lapsed_practices": [],
        "audit_denied": False,
        "v": 2,
        "seq": 5,
    }
    return event | overrides


def rows_of(*events, **where):
    return [r.as_tuple()[1:5] for r in build_report(events, ReportFilter(**where))]


class TestUnknownRecordRows:
    def test_a_disclosure_without_a_record_id_is_an_unknown_row(self):
        event = request(decrypted={"ssn": 1, "history": 0}, plaintext_kept={"phone": 2})
        assert rows_of(event) == [
            ("pa", UNKNOWN_RECORD, "phone", 1),
            ("pa", UNKNOWN_RECORD, "ssn", 1),
        ]

    def test_classes_of_named_records_add_no_unknown_row(self):
        named = [{"practice": "pa", "field_classes": ["ssn"], "records": ["p-1"]}]
        event = request(decrypted={"ssn": 3, "history": 1}, records=named)
        assert rows_of(event) == [("pa", UNKNOWN_RECORD, "history", 1), ("pa", "p-1", "ssn", 1)]

    def test_masked_only_and_unknown_versions_add_nothing(self):
        assert rows_of(request(masked={"ssn": 1})) == []
        assert rows_of(request(decrypted={"ssn": 1}, v=3)) == []

    def test_several_practices_are_all_named_and_each_filters(self):
        event = request(decrypted={"ssn": 1}, practices=["pb", "pa"])
        assert rows_of(event) == [("pa or pb", UNKNOWN_RECORD, "ssn", 1)]
        assert rows_of(event, practice="pb") == [("pa or pb", UNKNOWN_RECORD, "ssn", 1)]
        assert rows_of(event, practice="pc") == []
        assert rows_of(event, record=UNKNOWN_RECORD) != []
        assert rows_of(event, record="p-1") == []

    def test_the_table_counts_them_apart(self):
        named = [{"practice": "pa", "field_classes": ["ssn"], "records": ["p-1"]}]
        rows = build_report(
            [request(decrypted={"ssn": 1}, records=named), request(decrypted={"ssn": 1})],
            ReportFilter(),
        )
        table = render_report(rows, "table")
        assert "1 record(s) disclosed to 1 subject(s) in 2 disclosure(s), 1 of them from " in (
            table
        )


async def test_a_real_disclosure_without_a_record_id_is_reported(audit_env):
    """The proxy discloses an SSN from a record with no id key: every format lists it."""
    env = audit_env
    await env.grant("mallory", "practice-a")
    doc = {"mrn": "A-77", "practice_id": "practice-a", "ssn": env.encrypt("practice-a", "ssn", SSN)}
    env.portal.script("/api/chart", orjson.dumps(doc))
    response = await env.get("/api/chart", sub="mallory")
    assert SSN in await response.text()
    await written(env)
    subject = str(env.subject("mallory"))
    event = [
        orjson.loads(line)
        for line in (env.folder / "audit.jsonl").read_bytes().splitlines()
        if b'"request"' in line
    ][-1]
    assert (event["decrypted"], event["records"]) == ({"ssn": 1}, [])

    def report(*args):
        return phi_audit("report", "--subject", subject, *args, config=env.config_path)

    as_json = report("--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    rows = json.loads(as_json.stdout)
    assert [(r["practice"], r["record"], r["field_class"], r["count"]) for r in rows] == [
        ("practice-a", UNKNOWN_RECORD, "ssn", 1)
    ]
    as_csv = report("--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    assert list(csv.reader(io.StringIO(as_csv.stdout)))[1][1:5] == [
        "practice-a",
        UNKNOWN_RECORD,
        "ssn",
        "1",
    ]
    table = report()
    assert table.returncode == 0, table.stderr
    assert "0 record(s) disclosed to 1 subject(s) in 1 disclosure(s), 1 of them from" in (
        table.stdout
    )
    by_practice = phi_audit("report", "--practice", "practice-a", config=env.config_path)
    assert UNKNOWN_RECORD in by_practice.stdout
    assert phi_audit("verify", config=env.config_path).returncode == 0

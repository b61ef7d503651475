"""Line formats: v2 is written, v1 is read forever, and a trail an upgrade switched reads as one.

The v1 lines here are produced at test time, as a v1 proxy sealed them: one object per record,
`v: 1`, with the chain key of the test trail.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from audit_helpers import lines_of, phi_audit, settings_in
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.audit import FileSink, trail_files, verify_files
from proxy.audit.chain import Chain, Head
from proxy.audit.events import iso_time
from proxy.audit.records import group_records
from proxy.audit.report import ReportFilter, build_report
from proxy.audit.secrets import ChainKey, load_chain_key
from proxy.grants.usage import read_usage

_TS = "2026-03-02T00:00:00.000Z"
_START = datetime(2026, 3, 2, tzinfo=UTC)
_REPORTS = (
    ("--format", "table"),
    ("--format", "json"),
    ("--format", "csv"),
    ("--record", "p-2", "--format", "json"),
    ("--practice", "practice-b", "--subject", "https://idp|bob"),
    ("--since", "2026-03-02T00:03:00Z", "--until", "2026-03-02T00:07:00Z", "--format", "csv"),
)


def v1_records(disclosures):
    """`records` as a v1 proxy wrote them: one object per record with a class, sorted."""
    return [
        {"field_classes": sorted(classes), "practice": practice, "record": record_id}
        for (practice, record_id), classes in sorted(disclosures.items())
        if classes
    ]


def request(subject, minute, disclosures, *, version):
    """A request event's payload disclosing `disclosures`, shaped as format `version` says."""
    encode = v1_records if version == 1 else group_records
    return {
        "type": "request",
        "ts": iso_time(_START + timedelta(minutes=minute)),
        "subject": subject,
        "grant_ids": [f"g-{subject[-3:]}"],
        "lapsed_practices": [],
        "records": encode(disclosures),
    }


def scenario():
    """Ten requests of two subjects over two practices: repeats, shared and distinct classes."""
    events = []
    for n in range(10):
        subject = "https://idp|alice" if n % 3 else "https://idp|bob"
        practice = "practice-a" if n % 2 else "practice-b"
        disclosures = {(practice, f"p-{n % 4}"): {"ssn", "history"}, (practice, f"p-{n}"): {"ssn"}}
        if n % 5 == 0:
            disclosures["practice-a", "p-masked"] = set()
        events.append((subject, n, disclosures))
    return events


def write_trail(folder, *, upgrade_at, rotate=False):
    """The scenario as a proxy wrote it: v1 before event `upgrade_at`, v2 from there on.

    `rotate`: the upgrade happens at a rotation (the v1 file renamed away), not mid-file.
    """
    audit = settings_in(folder, fsync=False, checkpoint_every=4)
    (folder / "proxy.yaml").write_text("audit: {fsync: false, checkpoint_every: 4}\n")
    key = load_chain_key(audit)
    sink = FileSink(audit.path, fsync=False)
    for index, (subject, minute, disclosures) in enumerate(scenario()):
        version = 1 if index < upgrade_at else 2
        if rotate and index == upgrade_at:
            audit.path.rename(audit.path.with_name("audit.jsonl.1"))
        chain = Chain(key, checkpoint_every=4, format_version=version)
        payload = request(subject, minute, disclosures, version=version)
        sink.append(chain, [payload], ts=_TS, force_checkpoint=False)
    return audit


def versions_in(audit):
    return [orjson.loads(line)["v"] for path in trail_files(audit.path) for line in lines_of(path)]


class TestUpgradedTrail:
    @pytest.mark.parametrize("rotate", [False, True], ids=["mid-file", "at-rotation"])
    def test_a_v1_trail_continued_in_v2_verifies_and_reports_like_an_all_v2_trail(
        self, tmp_path, rotate
    ):
        """phi-audit verify accepts the switch; every report format and filter prints the same."""
        (tmp_path / "upgraded").mkdir()
        (tmp_path / "v2").mkdir()
        upgraded = write_trail(tmp_path / "upgraded", upgrade_at=6, rotate=rotate)
        current = write_trail(tmp_path / "v2", upgrade_at=0)
        assert {1, 2} <= set(versions_in(upgraded))
        assert set(versions_in(current)) == {2}
        for folder in ("upgraded", "v2"):
            verified = phi_audit("verify", config=tmp_path / folder / "proxy.yaml")
            assert verified.returncode == 0, verified.stderr
            assert verified.stdout.startswith("OK: ")
        for args in _REPORTS:
            old, new = (
                phi_audit("report", *args, config=tmp_path / folder / "proxy.yaml")
                for folder in ("upgraded", "v2")
            )
            assert (old.returncode, new.returncode) == (0, 0), old.stderr + new.stderr
            assert old.stdout == new.stdout, args
            assert "p-" in new.stdout, f"{args}: the report is empty"
        assert "p-masked" not in new.stdout

    def test_grant_review_reads_the_upgraded_trail(self, tmp_path):
        """phi-grants review's last use per grant is the same for a v1→v2 trail as for v2 only."""
        (tmp_path / "upgraded").mkdir()
        (tmp_path / "v2").mkdir()
        write_trail(tmp_path / "upgraded", upgrade_at=5)
        write_trail(tmp_path / "v2", upgrade_at=0)
        now = _START + timedelta(days=1)
        old, new = (read_usage(tmp_path / f / "proxy.yaml", now=now) for f in ("upgraded", "v2"))
        assert (old.status, new.status) == ("verified", "verified")
        assert old.last_use == new.last_use
        assert set(new.last_use) == {"g-ice", "g-bob"}


class TestUnknownVersions:
    def test_a_line_of_an_unknown_format_is_refused_naming_the_line(self, tmp_path):
        """A v3 line (from a newer proxy, correctly sealed) fails verify at its file:line."""
        audit = write_trail(tmp_path, upgrade_at=0)
        newer = Chain(load_chain_key(audit), checkpoint_every=4, format_version=3)
        FileSink(audit.path, fsync=False).append(
            newer, [{"type": "proxy", "ts": _TS, "action": "start"}], ts=_TS, force_checkpoint=False
        )
        number = len(lines_of(audit.path))
        verified = phi_audit("verify", config=tmp_path / "proxy.yaml")
        assert verified.returncode == 1
        assert f"{audit.path}:{number}: " in verified.stderr
        assert "line format v=3 is not one this phi-audit reads (1, 2)" in verified.stderr
        report = phi_audit("report", config=tmp_path / "proxy.yaml")
        assert report.returncode == 1
        assert "WARNING: the trail does not verify" in report.stderr

    @pytest.mark.parametrize("version", [0, 3, "2", None, True, 2.0])
    def test_only_the_integers_1_and_2_are_formats(self, tmp_path, version):
        """Anything else in `v` is refused, also when the line's MAC is valid."""
        key = ChainKey(b"k" * 32)
        line, _ = Chain(key, checkpoint_every=9, format_version=version).seal(
            {"type": "genesis", "ts": _TS}, Head.empty()
        )
        path = tmp_path / "audit.jsonl"
        path.write_bytes(line + b"\n")
        problem = verify_files([path], key=key).problem
        assert problem is not None
        assert (problem.file, problem.line) == (path, 1)
        assert "line format v=" in problem.message


_classes = st.frozensets(st.sampled_from(("ssn", "history", "insurance_id")), max_size=3)
_disclosures = st.dictionaries(
    st.tuples(st.sampled_from(("practice-a", "practice-b")), st.text("ab1\u00e9", max_size=3)),
    _classes,
    max_size=12,
)
_events = st.lists(
    st.tuples(st.sampled_from(("https://idp|alice", "https://idp|bob")), st.integers(0, 9)),
    min_size=1,
    max_size=6,
)


def _sealed_events(plan, version):
    chain = Chain(ChainKey(b"k" * 32), checkpoint_every=1000, format_version=version)
    head, out = Head.empty(), []
    for subject, minute, disclosures in plan:
        line, head = chain.seal(request(subject, minute, disclosures, version=version), head)
        out.append(orjson.loads(line))
    return out


class TestReportEquivalence:
    @settings(max_examples=80, deadline=None)
    @given(
        st.lists(st.tuples(_events, _disclosures), min_size=1, max_size=4),
        st.one_of(st.none(), st.sampled_from(("https://idp|alice", "https://idp|bob"))),
        st.one_of(st.none(), st.sampled_from(("practice-a", "practice-b"))),
        st.one_of(st.none(), st.text("ab1\u00e9", min_size=1, max_size=3)),
    )
    def test_v1_and_v2_lines_of_the_same_disclosures_give_the_same_rows(
        self, batches, subject, practice, record
    ):
        """Whatever was disclosed and however filtered, both formats report the same rows."""
        plan = [(s, m, d) for events, d in batches for s, m in events]
        where = ReportFilter(subject, practice, record, None, None)
        rows = build_report(_sealed_events(plan, 2), where)
        assert build_report(_sealed_events(plan, 1), where) == rows
        expected = {
            (s, p, r, c)
            for s, _, d in plan
            for (p, r), classes in d.items()
            for c in classes
            if (subject in {None, s}) and (practice in {None, p}) and (record in {None, r})
        }
        assert {(row.subject, row.practice, row.record, row.field_class) for row in rows} == (
            expected
        )

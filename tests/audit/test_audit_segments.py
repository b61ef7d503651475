"""Verifying a trail as segments, in parallel processes: it proves what one pass proves.

The reference is the trail checked as one segment per file in this process (the pass the
other audit tests pin, message by message). Cut into segments of any size and checked in two
forked processes, every tampering — an edit, a deletion, a swap, a duplicate, a cut end, a
forged signature, at any line, also the first or last line of a segment — must give the very
same result: the same problem at the same file:line, the same counts and notes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from functools import partial
from pathlib import Path

import orjson
import pytest
from audit_helpers import TS, phi_audit, settings_in
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from proxy.audit import AuditError, FileSink, open_chain, trail_files, verify_files
from proxy.audit.chain import canonical
from proxy.audit.files import iter_events
from proxy.audit.parallel import MIN_PARALLEL_BYTES
from proxy.audit.report import Disclosures, ReportFilter, build_report, merged_report
from proxy.audit.secrets import load_chain_key
from proxy.audit.segments import Segment, _mac_input, segment_lines

SUBJECTS = ("idp|alice", "idp|bob", "idp|carol")
TAMPERS = ("edit", "delete", "swap", "duplicate", "truncate", "flip", "forge_sig")


def _request(n: int) -> dict:
    classes = ["ssn", "history"][: 1 + n % 2]
    return {
        "type": "request",
        "ts": f"2026-03-{1 + n % 28:02d}T10:00:00.000Z",
        "subject": SUBJECTS[n % 3],
        "decrypted": dict.fromkeys(classes, 1),
        "practices": ["practice-a"],
        "records": [
            {"field_classes": sorted(classes), "practice": "practice-a", "records": [f"p-{n % 17}"]}
        ],
    }


@pytest.fixture(scope="module")
def trail_folder(tmp_path_factory):
    """~130 events in two files (rotated once), signed checkpoints every 5 events."""
    folder = tmp_path_factory.mktemp("segments")
    pem = folder / "signing.pem"
    pem.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    config = settings_in(folder, signing_key_file="signing.pem", checkpoint_every=5)
    chain = open_chain(config)
    sink = FileSink(config.path, fsync=False)
    for batch in range(12):
        payloads = [_request(batch * 10 + n) for n in range(10)]
        sink.append(chain, payloads, ts=TS, force_checkpoint=batch % 4 == 3)
        if batch == 5:
            config.path.rename(folder / "audit.jsonl.1")
    return folder


def _copy(folder: Path) -> Path:
    work = Path(tempfile.mkdtemp(prefix="phi-seg-"))
    for item in folder.iterdir():
        shutil.copy2(item, work / item.name)
    return work


def _tamper(files: list[Path], kind: str, at: int) -> None:
    """Apply `kind` at line `at` counted across `files` (clamped to a valid line)."""
    counts = [len(p.read_bytes().splitlines(keepends=True)) for p in files]
    at %= sum(counts)
    index = 0
    while at >= counts[index]:
        at -= counts[index]
        index += 1
    path = files[index]
    lines = path.read_bytes().splitlines(keepends=True)
    if kind == "edit":
        event = orjson.loads(lines[at])
        event["subject"] = "idp|mallory"
        lines[at] = canonical(event) + b"\n"
    elif kind == "delete":
        del lines[at]
    elif kind == "swap" and at + 1 < len(lines):
        lines[at], lines[at + 1] = lines[at + 1], lines[at]
    elif kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "truncate":
        lines = lines[:at]
    elif kind == "flip":
        lines[at] = lines[at][:10] + bytes([lines[at][10] ^ 1]) + lines[at][11:]
    elif kind == "forge_sig":  # another checkpoint's signature on this one
        sigs = [orjson.loads(line).get("sig") for line in lines]
        donors = [s for s in sigs if s is not None]
        event = orjson.loads(lines[at])
        if event.get("sig") is not None and len(set(donors)) > 1:
            event["sig"] = next(s for s in donors if s != event["sig"])
            lines[at] = canonical(event) + b"\n"
    path.write_bytes(b"".join(lines))


def _outcome(result):
    return (
        None if result.problem is None else str(result.problem),
        result.events,
        result.files,
        result.first_seq,
        result.last_seq,
        result.checkpoints,
        result.signatures_checked,
        result.notes,
    )


def _verify(folder: Path, *, with_key: bool, signed: bool = True, **options):
    config = settings_in(
        folder, signing_key_file="signing.pem" if signed else None, checkpoint_every=5
    )
    public_key = None
    if not with_key:
        private = serialization.load_pem_private_key((folder / "signing.pem").read_bytes(), None)
        public_key = private.public_key()
    return verify_files(
        trail_files(config.path),
        key=load_chain_key(config) if with_key else None,
        public_key=public_key,
        head_of=config.path,
        whole_trail=True,
        **options,
    )


class TestSegmentsProveWhatOnePassProves:
    def test_an_untouched_trail_verifies_in_two_processes(self, trail_folder):
        """Cut into ~40 segments and checked by two forked workers: OK, every event counted."""
        assert threading.active_count() == 1, "the pool is only used by a single-threaded process"
        whole = _verify(trail_folder, with_key=True)
        split = _verify(trail_folder, with_key=True, workers=2, segment_bytes=900)
        assert split.workers == 2
        assert split.problem is None
        assert _outcome(split) == _outcome(whole)
        assert whole.events == whole.last_seq

    @settings(
        max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(
        kind=st.sampled_from(TAMPERS),
        at=st.integers(min_value=0, max_value=10_000),
        segment_bytes=st.integers(min_value=1, max_value=6000),
        workers=st.sampled_from([1, 2]),
        with_key=st.booleans(),
    )
    def test_any_tampering_is_found_at_the_same_line_however_the_trail_is_cut(  # noqa: PLR0917
        self, trail_folder, kind, at, segment_bytes, workers, with_key
    ):
        """The same problem, file:line, counts and notes as one pass, for every cut."""
        work = _copy(trail_folder)
        try:
            files = trail_files(work / "audit.jsonl")
            _tamper(files, kind, at)
            whole = _verify(work, with_key=with_key)
            split = _verify(work, with_key=with_key, workers=workers, segment_bytes=segment_bytes)
            assert _outcome(split) == _outcome(whole)
        finally:
            shutil.rmtree(work)

    @pytest.mark.parametrize("kind", ["edit", "delete", "swap", "flip"])
    def test_a_tampered_event_in_each_segment_is_found_in_two_processes(self, trail_folder, kind):
        """Whichever segment holds the tampered line — first, middle, last — it is named."""
        files = trail_files(trail_folder / "audit.jsonl")
        total = sum(len(p.read_bytes().splitlines()) for p in files)
        for at in (1, 2, total // 3, total // 2, total - 3):
            work = _copy(trail_folder)
            try:
                _tamper(trail_files(work / "audit.jsonl"), kind, at)
                whole = _verify(work, with_key=True)
                split = _verify(work, with_key=True, workers=2, segment_bytes=700)
                assert whole.problem is not None, (kind, at)
                assert split.workers == 2
                assert _outcome(split) == _outcome(whole), (kind, at)
            finally:
                shutil.rmtree(work)


def _die_in_worker():
    """An event-sink factory that kills the worker process calling it (as an OOM kill would)."""
    os._exit(9)


class TestAWorkerThatDies:
    def test_is_an_error_not_a_verdict(self, trail_folder):
        """A worker killed mid-check ends the command with AuditError, never OK or BROKEN."""
        with pytest.raises(AuditError, match="worker process checking the audit trail died"):
            _verify(
                trail_folder, with_key=True, workers=2, segment_bytes=900, collect=_die_in_worker
            )


class TestReportInTheVerifyingPass:
    @pytest.mark.parametrize("where", [ReportFilter(), ReportFilter(subject="idp|bob")])
    def test_rows_equal_a_report_over_every_event(self, trail_folder, where):
        """The totals gathered per segment by two workers merge to `build_report`'s rows."""
        files = trail_files(trail_folder / "audit.jsonl")
        expected = build_report((e for _, _, e in iter_events(files)), where)
        result = _verify(
            trail_folder,
            with_key=True,
            workers=2,
            segment_bytes=1500,
            collect=partial(Disclosures, where),
        )
        assert result.workers == 2
        assert len(result.collected) > 5
        assert merged_report(result.collected, where) == expected
        assert expected

    def test_a_broken_trail_still_reports_every_readable_event(self, trail_folder):
        """After the first problem verification stops, but the report reads on, as before."""
        work = _copy(trail_folder)
        try:
            files = trail_files(work / "audit.jsonl")
            _tamper(files, "edit", 5)
            where = ReportFilter()
            expected = build_report((e for _, _, e in iter_events(files)), where)
            for workers, segment_bytes in ((1, None), (2, 800)):
                result = _verify(
                    work,
                    with_key=True,
                    workers=workers,
                    segment_bytes=segment_bytes,
                    collect=partial(Disclosures, where),
                )
                assert result.problem is not None
                assert merged_report(result.collected, where) == expected
        finally:
            shutil.rmtree(work)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["mac", "a", "z", "records"]), inner, max_size=3)
    ),
    max_leaves=8,
)


class TestMacInput:
    @given(
        mac=st.sampled_from(["0" * 64, "ab" * 32, 'x","a":"y', "é\x1b"]) | st.text(max_size=70),
        others=st.dictionaries(st.sampled_from(["a", "b", "m", "md", "z", "seq"]), _json),
        nested_same=st.booleans(),
    )
    def test_the_cut_line_is_the_canonical_body(self, mac, others, nested_same):
        """For any canonical line, the bytes MACed are exactly canonical(event without mac).

        Also when a nested object holds a `mac` member with the very same value.
        """
        event = {**others, "mac": mac}
        if nested_same:
            event["details"] = {"mac": mac, "n": 1}
        raw = canonical(event)
        body = canonical({k: v for k, v in event.items() if k != "mac"})
        assert _mac_input(raw, orjson.loads(raw), mac, is_canonical=True) == body


class TestSegmentLines:
    @given(
        content=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"{}", b"\n\n"]), max_size=40),
        cuts=st.lists(st.integers(min_value=0, max_value=80), max_size=4),
    )
    def test_segments_hold_the_lines_iterating_the_file_gives(self, content, cuts):
        """Any cut at line starts: the same lines, none lost or merged."""
        data = b"".join(content)
        with tempfile.NamedTemporaryFile() as handle:
            handle.write(data)
            handle.flush()
            path = Path(handle.name)
            starts = sorted(
                {0}
                | {data.index(b"\n", c) + 1 for c in cuts if b"\n" in data[c:] and c < len(data)}
            )
            ends = [*starts[1:], len(data)]
            got = [
                line
                for start, end in zip(starts, ends, strict=True)
                if start < end or start == 0
                for line in segment_lines(Segment(path, start, end))
            ]
            with path.open("rb") as reread:
                expected = [line.rstrip(b"\n") for line in reread]
            assert got == expected


@pytest.fixture(scope="module")
def large_trail(tmp_path_factory):
    """A trail past the size at which `phi-audit` uses its worker processes (16 MB)."""
    folder = tmp_path_factory.mktemp("large")
    (folder / "proxy.yaml").write_text("audit: {fsync: false, checkpoint_every: 1000}\n")
    config = settings_in(folder, checkpoint_every=1000)
    chain = open_chain(config)
    sink = FileSink(config.path, fsync=False)
    n = 0
    while not config.path.exists() or config.path.stat().st_size < MIN_PARALLEL_BYTES + 2**20:
        payloads = []
        for _ in range(5000):
            payloads.append(_request(n) | {"request_id": f"{n:016x}", "pad": "x" * 200})
            n += 1
        sink.append(chain, payloads, ts=TS, force_checkpoint=False)
    return folder


class TestPhiAuditOnALargeTrail:
    def test_verify_and_report_in_worker_processes_match_one_pass(self, large_trail):
        """`phi-audit verify` says OK with every event counted; `report` lists every disclosure."""
        config = large_trail / "proxy.yaml"
        verified = phi_audit("verify", config=config)
        assert verified.returncode == 0, verified.stderr
        one_pass = _verify(large_trail, with_key=True, signed=False)
        assert f"OK: {one_pass.events} events (seq 1..{one_pass.last_seq})" in verified.stdout
        reported = phi_audit("report", "--subject", "idp|bob", "--format", "json", config=config)
        assert reported.returncode == 0, reported.stderr
        files = trail_files(large_trail / "audit.jsonl")
        expected = build_report(
            (e for _, _, e in iter_events(files)), ReportFilter(subject="idp|bob")
        )
        rows = orjson.loads(reported.stdout)
        assert [tuple(r.values()) for r in rows] == [r.as_tuple() for r in expected]

    def test_an_event_edited_near_the_end_is_named_by_phi_audit(self, large_trail):
        """The edited line is in the last segment a worker checks: BROKEN names that line."""
        work = _copy(large_trail)
        try:
            path = work / "audit.jsonl"
            lines = path.read_bytes().splitlines(keepends=True)
            at = len(lines) - 10
            event = orjson.loads(lines[at])
            event["subject"] = "idp|mallory"
            lines[at] = canonical(event) + b"\n"
            path.write_bytes(b"".join(lines))
            result = phi_audit("verify", config=work / "proxy.yaml")
            assert result.returncode == 1
            assert f"BROKEN: {path}:{at + 1}: event seq {at + 1}: MAC does not match" in (
                result.stderr
            )
        finally:
            shutil.rmtree(work)

"""Verifying a trail as segments, in parallel processes: it proves what one pass proves.

The reference is the trail checked as one segment per file in this process (the pass the
other audit tests pin, message by message). Cut into segments of any size and checked in two
forked processes, every tampering — an edit, a deletion, a swap, a duplicate, a cut end, a
forged signature, at any line, also the first or last line of a segment — must give the very
same result: the same problem at the same file:line, the same counts and notes.

Each of those runs also twice over: with the compiled core vouching for intact segments
(`proxy.audit.native_segments`, core/src/audit.rs) and with every line checked in Python (the
oracle). Both must give identical results; the core may only ever accept what Python accepts.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
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
from proxy.audit.chain import canonical, line_hash, mac_of
from proxy.audit.files import iter_events
from proxy.audit.native_segments import check_segment_native, native_checker
from proxy.audit.parallel import MAX_SEGMENT_BYTES, MIN_PARALLEL_BYTES, segment_bytes_for
from proxy.audit.report import Disclosures, ReportFilter, build_report, merged_report
from proxy.audit.secrets import ChainKey, load_chain_key
from proxy.audit.segments import Segment, _mac_input, check_segment, segment_lines

SUBJECTS = ("idp|alice", "idp|bob", "idp|carol")
_TRAIL_FILTERS = (
    ReportFilter(subject="idp|bob"),
    ReportFilter(practice="practice-a"),
    ReportFilter(practice="practice-b"),
    ReportFilter(practice="practice-a", since=datetime(2026, 3, 5, tzinfo=UTC)),
)
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


def _line_cuts(path: Path) -> list[tuple[int, int]]:
    """A segment starting at every fifth line of `path`, to the file's end."""
    data = path.read_bytes()
    starts = [i + 1 for i, byte in enumerate(data) if byte == ord("\n")][4::5]
    return [(start, len(data)) for start in starts if start < len(data)]


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


@pytest.fixture(scope="module")
def apart():
    """A fresh single-threaded process to verify in, so the checking workers are forked for sure.

    Verification forks only from a single-threaded process; a test runner's worker that ran a
    browser test has threads, and would check in-process instead (`workers == 1`).
    """
    with ProcessPoolExecutor(
        max_workers=1, mp_context=multiprocessing.get_context("spawn")
    ) as pool:
        yield pool


def _verify_apart(pool: ProcessPoolExecutor, folder: Path, **options):
    return pool.submit(partial(_verify, folder, **options)).result()


class TestSegmentsProveWhatOnePassProves:
    def test_the_compiled_core_vouches_for_every_segment_of_an_untouched_trail(self, trail_folder):
        """Not vacuous: with the core installed, intact segments are accepted natively."""
        if native_checker() is None:
            pytest.skip("the pure-Python core runs here (PHI_PROXY_PURE=1 or no compiled core)")
        files = trail_files(trail_folder / "audit.jsonl")
        key = load_chain_key(settings_in(trail_folder, checkpoint_every=5)).reveal_for_hmac()
        for path in files:
            size = path.stat().st_size
            for start, end in ((0, size), *_line_cuts(path)):
                segment = Segment(path, start, end)
                native = check_segment_native(segment, key, None)
                assert native is not None, (path, start)
                assert native == check_segment(segment, key, None)

    def test_an_untouched_trail_verifies_in_two_processes(self, trail_folder, apart):
        """Cut into ~40 segments and checked by two forked workers: OK, every event counted."""
        whole = _verify(trail_folder, with_key=True)
        split = _verify_apart(apart, trail_folder, with_key=True, workers=2, segment_bytes=900)
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
            where = _TRAIL_FILTERS[at % len(_TRAIL_FILTERS)]
            outcomes, reports = [], []
            for native in (False, True):  # False first: the oracle, every line in Python
                for options in ({}, {"workers": workers, "segment_bytes": segment_bytes}):
                    result = _verify(
                        work,
                        with_key=with_key,
                        native=native,
                        collect=partial(Disclosures, where),
                        **options,
                    )
                    outcomes.append(_outcome(result))
                    reports.append(merged_report(result.collected, where))
            assert all(outcome == outcomes[0] for outcome in outcomes), outcomes
            assert all(report == reports[0] for report in reports)
        finally:
            shutil.rmtree(work)

    @pytest.mark.parametrize("kind", ["edit", "delete", "swap", "flip"])
    def test_a_tampered_event_in_each_segment_is_found_in_two_processes(
        self, trail_folder, kind, apart
    ):
        """Whichever segment holds the tampered line — first, middle, last — it is named."""
        files = trail_files(trail_folder / "audit.jsonl")
        total = sum(len(p.read_bytes().splitlines()) for p in files)
        for at in (1, 2, total // 3, total // 2, total - 3):
            work = _copy(trail_folder)
            try:
                _tamper(trail_files(work / "audit.jsonl"), kind, at)
                whole = _verify(work, with_key=True, native=False)
                split = _verify_apart(apart, work, with_key=True, workers=2, segment_bytes=700)
                assert whole.problem is not None, (kind, at)
                assert split.workers == 2
                assert _outcome(split) == _outcome(whole), (kind, at)
            finally:
                shutil.rmtree(work)


class _EveryEvent(list):
    """An event sink that keeps every event it is given."""

    def add(self, event):
        self.append(event)


def _die_in_worker():
    """An event-sink factory that kills the worker process calling it (as an OOM kill would)."""
    os._exit(9)


def _verify_with_a_dying_worker(folder: Path) -> str:
    """Run in a fresh single-threaded process, so verification forks its workers for sure.

    (A test process with threads, e.g. a browser driver's, checks in-process instead, and the
    dying sink would take the test runner's own worker down.)
    """
    assert threading.active_count() == 1
    try:
        _verify(folder, with_key=True, workers=2, segment_bytes=900, collect=_die_in_worker)
    except AuditError as exc:
        return str(exc)
    return "no error"


class TestAWorkerThatDies:
    def test_is_an_error_not_a_verdict(self, trail_folder, apart):
        """A worker killed mid-check ends the command with AuditError, never OK or BROKEN."""
        message = apart.submit(_verify_with_a_dying_worker, trail_folder).result()
        assert "worker process checking the audit trail died" in message


class TestReportInTheVerifyingPass:
    @pytest.mark.parametrize("where", [ReportFilter(), ReportFilter(subject="idp|bob")])
    def test_rows_equal_a_report_over_every_event(self, trail_folder, where, apart):
        """The totals gathered per segment by two workers merge to `build_report`'s rows."""
        files = trail_files(trail_folder / "audit.jsonl")
        expected = build_report((e for _, _, e in iter_events(files)), where)
        result = _verify_apart(
            apart,
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

    def test_a_sink_without_a_native_filter_gets_every_event(self, trail_folder):
        """The core prefilters only for `Disclosures`; any other sink sees every event."""
        files = trail_files(trail_folder / "audit.jsonl")
        result = _verify(
            trail_folder, with_key=True, workers=2, segment_bytes=1500, collect=_EveryEvent
        )
        assert result.problem is None
        assert [e for sink in result.collected for e in sink] == [
            e for _, _, e in iter_events(files)
        ]

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


_KEY = ChainKey(b"k" * 32)
#: Texts the report filters below look for (a practice, a subject), and str() of non-strings.
_FILTERED = ["a", "practice-a", "idp|bob", "None", "5", "True"]
_WHERE = [
    ReportFilter(),
    ReportFilter(practice="a"),
    ReportFilter(practice="practice-a", subject="idp|bob"),
    ReportFilter(practice="None"),
    ReportFilter(practice="5"),
    ReportFilter(record="a"),
]
_KEY_NAMES = st.sampled_from(
    ["a", "continues", "decrypted", "mac", "practices", "prev", "records", "subject", "ts", "é"]
)
_PLAIN_KEYS = _KEY_NAMES | st.text(
    st.characters(blacklist_categories=["Cs", "Cc"], blacklist_characters='"\\'), max_size=4
)


def _values(*, floats: bool) -> st.SearchStrategy[object]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=6)
        | st.sampled_from(_FILTERED)
    )
    if floats:
        scalars |= st.floats(allow_nan=False, allow_infinity=False)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_PLAIN_KEYS, inner, max_size=3),
        max_leaves=10,
    )


def _sealed(extra: dict, seq: int, prev: str, kind: str) -> bytes:
    """A line as the chain writes it, with `extra` members (which the fixed ones override)."""
    body = {k: v for k, v in extra.items() if k != "mac"} | {
        "seq": seq,
        "v": 2,
        "type": kind,
        "prev": prev,
    }
    return canonical({**body, "mac": mac_of(_KEY, body)})


def _chain(extras: list[dict], kinds: list[str], first_prev: str) -> list[bytes]:
    lines, prev = [], first_prev
    for seq, (extra, kind) in enumerate(zip(extras, kinds, strict=False), start=7):
        lines.append(_sealed(extra, seq, prev, kind))
        prev = line_hash(lines[-1])
    return lines


def _both_ways(lines: list[bytes], *, at_file_start: bool, with_key: bool):
    """Check `lines` as one segment in Python and through the core; the core's result or None.

    Whenever the core vouches for the segment, its result and the report totals it feeds are
    the Python check's, and the Python check found no problem.
    """
    with tempfile.TemporaryDirectory(prefix="phi-native-") as scratch:
        path = Path(scratch) / "audit.jsonl"
        lead = b"" if at_file_start else b"{}\n"
        path.write_bytes(lead + b"".join(line + b"\n" for line in lines))
        segment = Segment(path, len(lead), path.stat().st_size)
        key = _KEY.reveal_for_hmac() if with_key else None
        for where in _WHERE:
            python_sink, native_sink = Disclosures(where), Disclosures(where)
            python = check_segment(segment, key, None, python_sink)
            native = check_segment_native(segment, key, None, native_sink)
            if native is not None:
                assert python.problem is None, python.problem
                assert native == python
                assert native_sink.rows() == python_sink.rows(), where
    return native


_MUTATIONS = st.sampled_from(["none", "flip", "insert", "spaces", "unsorted", "ascii"])
_INSERTS = st.sampled_from(
    [b" ", b"\\", b'"', b",", b"1.0", b"-0", b"\\u00e9", b"\\/", b"\n", b"\x00"]
)


class TestTheCompiledCoreNeverAcceptsWhatPythonRefuses:
    @settings(max_examples=300, deadline=None)
    @given(
        extras=st.lists(
            st.dictionaries(_KEY_NAMES | _PLAIN_KEYS, _values(floats=True), max_size=4),
            min_size=1,
            max_size=3,
        ),
        kinds=st.lists(
            st.sampled_from(["request", "genesis", "checkpoint", "change"]), min_size=3, max_size=3
        ),
        first_prev=st.sampled_from(["0" * 64, "ab" * 32]),
        mutation=_MUTATIONS,
        where=st.integers(min_value=0, max_value=10**6),
        insert=_INSERTS,
        at_file_start=st.booleans(),
        with_key=st.booleans(),
    )
    def test_any_line_any_edit_same_verdict(  # noqa: PLR0917
        self, extras, kinds, first_prev, mutation, where, insert, at_file_start, with_key
    ):
        """Random events, sealed, then maybe edited or respelled: the core never differs."""
        lines = _chain(extras, kinds, first_prev)
        at = where % len(lines)
        line = lines[at]
        if mutation == "flip":
            pos = where % len(line)
            lines[at] = line[:pos] + bytes([line[pos] ^ (1 << (where % 7))]) + line[pos + 1 :]
        elif mutation == "insert":
            pos = where % len(line)
            lines[at] = line[:pos] + insert + line[pos:]
        elif mutation in {"spaces", "unsorted", "ascii"}:
            import json

            event = orjson.loads(line)
            lines[at] = (
                json.dumps(event, sort_keys=True).encode()
                if mutation == "spaces"
                else orjson.dumps(dict(reversed(event.items())))
                if mutation == "unsorted"
                else json.dumps(event, sort_keys=True, separators=(",", ":")).encode()
            )
        _both_ways(lines, at_file_start=at_file_start, with_key=with_key)

    @settings(max_examples=150, deadline=None)
    @given(
        extras=st.lists(
            st.dictionaries(_PLAIN_KEYS, _values(floats=False), max_size=4), min_size=1, max_size=3
        ),
        kinds=st.lists(
            st.sampled_from(["request", "checkpoint", "change"]), min_size=3, max_size=3
        ),
        with_key=st.booleans(),
    )
    def test_the_core_vouches_for_every_intact_line_without_floats(self, extras, kinds, with_key):
        """Not vacuous: any intact chain of integer-only events is accepted by the core.

        Strings of any text, any nesting; with the very result of the Python check.
        """
        if native_checker() is None:
            pytest.skip("the pure-Python core runs here (PHI_PROXY_PURE=1 or no compiled core)")
        lines = _chain(extras, kinds, "ab" * 32)
        assert _both_ways(lines, at_file_start=False, with_key=with_key) is not None

    def test_a_mac_edited_into_non_ascii_text_is_a_mac_problem_not_a_crash(self):
        """`hmac.compare_digest` raises on non-ASCII text: such a MAC is named, not a traceback."""
        event = orjson.loads(_chain([{}], ["change"], "ab" * 32)[0])
        event["mac"] = "é" * 64
        with tempfile.TemporaryDirectory(prefix="phi-native-") as scratch:
            path = Path(scratch) / "audit.jsonl"
            path.write_bytes(b"{}\n" + canonical(event) + b"\n")
            segment = Segment(path, 3, path.stat().st_size)
            key = _KEY.reveal_for_hmac()
            assert check_segment_native(segment, key, None) is None
            problem = check_segment(segment, key, None).problem
        assert problem is not None
        assert problem[1].startswith("event seq 7: MAC does not match")


class TestSegmentSizes:
    @given(total=st.integers(min_value=0, max_value=1 << 40), workers=st.integers(1, 64))
    def test_no_segment_is_larger_than_the_core_reads_at_once(self, total, workers):
        """A 10 GB rotated file is not read into memory whole: segments stay ≤ 64 MB."""
        assert 1 <= segment_bytes_for(total, workers) <= MAX_SEGMENT_BYTES

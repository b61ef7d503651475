"""Fuzz the compiled audit-trail check against the Python one (`python fuzz/fuzz_audit.py`).

Each input is one flags byte (bit 0: with the audit key; bit 1: the segment opens its file)
and the bytes of a segment. The Python `check_segment` checks it; the compiled core
(`check_segment_native`) may vouch for it or give up. A finding is the core vouching for a
segment the Python check finds a problem in, or vouching with any other result or report
totals (libFuzzer stops and writes the input to crash-*; `--replay crash-…` runs it again).

The seed corpus is made at start-up — short chains sealed with a throwaway key, like the
proxy's own lines (requests with record groups, a checkpoint, a genesis) — so no key material
is ever committed. With the key most mutations break the MAC at once; without it (bit 0 clear)
the fuzzer reaches the canonical-form, version and link checks.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["proxy"]):
    from proxy.audit.chain import canonical, line_hash, mac_of
    from proxy.audit.native_segments import check_segment_native, native_checker
    from proxy.audit.report import Disclosures, ReportFilter
    from proxy.audit.secrets import ChainKey
    from proxy.audit.segments import Segment, check_segment

KEY = ChainKey(b"fuzz-key-not-a-secret-0123456789")
LEAD = b'{"not":"checked"}\n'  # the line before a segment that does not open its file
WHERE = (ReportFilter(subject="idp|bob"), ReportFilter(practice="practice-a"))
_WORK = Path(tempfile.mkdtemp(prefix="phi-fuzz-audit-"))
_SEGMENT_FILE = _WORK / "audit.jsonl"


def _chain(events: list[dict[str, object]]) -> bytes:
    lines, prev = [], "0" * 64
    for seq, event in enumerate(events, start=1):
        body = {**event, "seq": seq, "v": 2, "prev": prev}
        line = canonical({**body, "mac": mac_of(KEY, body)})
        lines.append(line)
        prev = line_hash(line)
    return b"".join(line + b"\n" for line in lines)


def seeds() -> list[bytes]:
    """A few chains shaped like a proxy's trail, each with every flags byte."""
    request = {
        "type": "request",
        "ts": "2026-03-01T10:00:00.000Z",
        "subject": "idp|bob",
        "decrypted": {"ssn": 2},
        "practices": ["practice-a"],
        "records": [{"field_classes": ["ssn"], "practice": "practice-a", "records": ["p-1"]}],
    }
    chains = [
        _chain([{"type": "genesis", "continues": False}, request, request]),
        _chain([request, {"type": "checkpoint", "covers_seq": 1, "sig": None}, request]),
        _chain([{"type": "change", "note": "é\x1b\u2028", "n": [1, -2, {"mac": "x"}]}]),
    ]
    return [bytes([flags]) + chain for chain in chains for flags in range(4)]


def test_one_input(data: bytes) -> None:
    """Check one segment both ways; raise on any difference the core must never make."""
    if not data:
        return
    flags, body = data[0], data[1:]
    lead = b"" if flags & 2 else LEAD
    _SEGMENT_FILE.write_bytes(lead + body)
    segment = Segment(_SEGMENT_FILE, len(lead), len(lead) + len(body))
    key = KEY.reveal_for_hmac() if flags & 1 else None
    for where in WHERE:
        python_sink, native_sink = Disclosures(where), Disclosures(where)
        python = check_segment(segment, key, None, python_sink)
        native = check_segment_native(segment, key, None, native_sink)
        if native is None:
            return
        if python.problem is not None:
            raise AssertionError(f"the core vouched for a segment with a problem: {python.problem}")
        if native != python:
            raise AssertionError(f"different results: core {native!r}, Python {python!r}")
        if native_sink.rows() != python_sink.rows():
            raise AssertionError(f"different report totals for {where}")


def main() -> None:
    """Write the seed corpus and hand over to libFuzzer."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="how long to fuzz")
    parser.add_argument(
        "--replay", nargs="+", metavar="FILE", help="run these inputs (e.g. a crash-* finding)"
    )
    args, rest = parser.parse_known_args()
    if native_checker() is None:
        sys.exit("fuzz: the compiled core is not installed (run `make core`); nothing to compare")
    if args.replay:
        for name in args.replay:
            test_one_input(Path(name).read_bytes())
            print(f"fuzz: {name}: the checks agree")
        return
    corpus = _WORK / "corpus"
    corpus.mkdir()
    for n, seed in enumerate(seeds()):
        (corpus / f"seed-{n}").write_bytes(seed)
    print(f"fuzz: corpus of {len(list(corpus.iterdir()))} inputs in {corpus}", flush=True)
    argv = [
        sys.argv[0],
        str(corpus),
        f"-max_total_time={int(args.minutes * 60)}",
        "-timeout=20",
        "-print_final_stats=1",
        *rest,
    ]
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

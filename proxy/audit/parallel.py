"""Cutting a trail into segments and checking them, here or in worker processes.

Segments are checked independently (`proxy.audit.segments`) and their results come back in
trail order, so the stitcher sees the same sequence of facts whichever way they were computed.
Worker processes are forked (they inherit the key as bytes; nothing secret crosses a pipe) and
used only when the trail is large enough to repay them and this process has no other threads —
forking a process with threads (a server, a database driver's helper) is unsafe, so there the
segments are checked in this process instead.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, BinaryIO, Final

from proxy.audit.errors import AuditError
from proxy.audit.native_segments import check_segment_fast
from proxy.audit.segments import Segment, SegmentResult

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxy.audit.segments import EventSink

__all__ = [
    "MAX_SEGMENT_BYTES",
    "MIN_PARALLEL_BYTES",
    "auto_workers",
    "check_segments",
    "split_file",
]

#: Below this many bytes a trail is checked in this process: forking costs more than it saves.
MIN_PARALLEL_BYTES: Final = 16 << 20
#: Segments per worker: several, so one slow segment (or a busy core) does not hold up the end.
_SEGMENTS_PER_WORKER: Final = 4
_MIN_SEGMENT: Final = 1 << 20
#: No segment is larger: the compiled core reads a whole segment into memory at once
#: (`proxy.audit.native_segments`), and a rotated file may be many GB.
MAX_SEGMENT_BYTES: Final = 64 << 20
_PROBE: Final = 1 << 16

_worker_key: bytes | None = None
_worker_public_key: Ed25519PublicKey | None = None
_worker_native = True


def auto_workers() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _next_line_start(handle: BinaryIO, offset: int, size: int) -> int:
    """The offset just after the first newline at or after `offset` (`size` if none)."""
    while offset < size:
        handle.seek(offset)
        block = handle.read(_PROBE)
        at = block.find(b"\n")
        if at >= 0:
            return offset + at + 1
        offset += len(block)
        if not block:
            break
    return size


def split_file(path: Path, size: int, segment_bytes: int) -> list[Segment]:
    """`path` (`size` bytes) as consecutive segments of about `segment_bytes`, cut at newlines."""
    segment_bytes = max(segment_bytes, 1)
    if size <= segment_bytes:
        return [Segment(path, 0, size)]
    segments: list[Segment] = []
    with path.open("rb") as handle:
        start = 0
        while start < size:
            end = _next_line_start(handle, start + segment_bytes, size)
            if size - end < segment_bytes // 4:  # no sliver of a segment at the end
                end = size
            segments.append(Segment(path, start, end))
            start = end
    return segments


def _init(key: bytes | None, public_key: Ed25519PublicKey | None, native: bool) -> None:
    global _worker_key, _worker_public_key, _worker_native  # per-process state of a worker
    _worker_key, _worker_public_key, _worker_native = key, public_key, native


def _check_in_worker(segment: Segment, collect: Callable[[], EventSink] | None) -> SegmentResult:
    sink = collect() if collect is not None else None
    result = check_segment_fast(
        segment, _worker_key, _worker_public_key, sink, native=_worker_native
    )
    if sink is not None:
        result.extra.append(sink)
    return result


def _check_here(
    segments: list[Segment],
    key: bytes | None,
    public_key: Ed25519PublicKey | None,
    collect: Callable[[], EventSink] | None,
    *,
    native: bool,
) -> Iterator[SegmentResult]:
    for segment in segments:
        sink = collect() if collect is not None else None
        result = check_segment_fast(segment, key, public_key, sink, native=native)
        if sink is not None:
            result.extra.append(sink)
        yield result


@contextlib.contextmanager
def check_segments(
    segments: list[Segment],
    key: bytes | None,
    public_key: Ed25519PublicKey | None,
    *,
    workers: int,
    collect: Callable[[], EventSink] | None = None,
    min_parallel_bytes: int = MIN_PARALLEL_BYTES,
    native: bool = True,
) -> Iterator[tuple[int, Iterator[SegmentResult]]]:
    """The processes used, and the results of checking `segments` in their order.

    `workers` > 1 checks them in that many forked processes when they hold at least
    `min_parallel_bytes` and this process is single-threaded; otherwise here, one after another
    (lazily, so a problem early in the trail ends the work). Leaving the block early cancels
    what has not started. `native`: let the compiled core vouch for intact segments
    (`proxy.audit.native_segments`); False checks every line in Python.
    """
    total = sum(s.end - s.start for s in segments)
    if workers <= 1 or total < min_parallel_bytes or threading.active_count() > 1:
        yield 1, _check_here(segments, key, public_key, collect, native=native)
        return
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("fork"),
        initializer=_init,
        initargs=(key, public_key, native),
    )
    try:
        futures = [pool.submit(_check_in_worker, s, collect) for s in segments]
        yield workers, (_result(future) for future in futures)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _result(future: Future[SegmentResult]) -> SegmentResult:
    try:
        return future.result()
    except BrokenProcessPool:
        raise AuditError(
            "a worker process checking the audit trail died (killed, or out of memory); "
            "nothing was concluded about the trail. Run the command again; if it recurs, "
            "check the memory available to it (dmesg shows OOM kills)"
        ) from None


def segment_bytes_for(total: int, workers: int) -> int:
    """How large to make segments so each of `workers` gets a few."""
    wanted = -(-total // max(1, workers * _SEGMENTS_PER_WORKER))
    return min(MAX_SEGMENT_BYTES, max(_MIN_SEGMENT, wanted))

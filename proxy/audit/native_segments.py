"""Checking a segment with the compiled core when it can vouch for it, else in Python.

The compiled core (`phi_proxy_core.audit_check_segment`, core/src/audit.rs) runs the per-line
checks of `check_segment` — JSON, canonical form, HMAC, format version, genesis, `seq` and
`prev` links — over a segment's bytes, ~5x cheaper per line. It only ever *accepts* a segment:
at the first line it cannot vouch for (any problem, or a shape it does not reproduce exactly,
such as a float) it gives up, and the Python `check_segment` checks the whole segment again
and names the problem in its own words. So a verdict, its `file:line` and its message are
always the Python check's; the core only shortens the common case, a trail that is intact.

Two things stay in Python even then: checkpoint signatures (the core returns the checkpoint
lines, verified here with `cryptography`; one that fails sends the segment to the Python
check) and the report's totals (the core hands back only the lines `Disclosures.add` might
count, parsed and added here). `PHI_PROXY_PURE=1`, or a compiled core built before this
existed, runs the Python check throughout.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import orjson

from keys.native import native_module
from proxy.audit.chain import READABLE_VERSIONS, signature_ok
from proxy.audit.segments import Edge, SegmentResult, check_segment

if TYPE_CHECKING:
    from collections.abc import Callable

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from proxy.audit.segments import EventSink, Segment

__all__ = ["check_segment_fast", "check_segment_native", "native_checker"]

_READABLE: Final = list(READABLE_VERSIONS)


def native_checker() -> Callable[..., Any] | None:
    """The compiled core's segment check, or None (pure-Python core, or a core without it)."""
    return getattr(native_module(), "audit_check_segment", None)


def _sink_filter(sink: EventSink) -> tuple[str | None, ...] | None:
    """The report's filter as the core applies it, or None: this sink has none (see below)."""
    native_filter = getattr(sink, "native_filter", None)
    return native_filter() if native_filter is not None else None


def check_segment_native(
    segment: Segment,
    key: bytes | None,
    public_key: Ed25519PublicKey | None,
    sink: EventSink | None = None,
    *,
    checker: Callable[..., Any] | None = None,
) -> SegmentResult | None:
    """`check_segment`'s result through the compiled core, or None if it gave up.

    None means nothing was decided and nothing was handed to `sink`: the caller runs the
    Python check. A `sink` must say what it takes (`native_filter()`, as `Disclosures` does);
    any other sink gets every event from the Python check. `checker`: the core's function
    (default: `native_checker()`).
    """
    check = checker if checker is not None else native_checker()
    wanted = _sink_filter(sink) if sink is not None else None
    if check is None or (sink is not None and wanted is None):
        return None  # the core hands back only what `Disclosures.add` may take
    with segment.path.open("rb") as handle:
        handle.seek(segment.start)
        data = handle.read(segment.end - segment.start)
    accepted = check(
        data,
        key,
        check_signatures=public_key is not None,
        at_file_start=segment.start == 0,
        readable=_READABLE,
        sink=wanted,
    )
    if accepted is None:
        return None
    (lines, checkpoints, first, last_seq, last_hash, head, reset, tail, sigs, spans) = accepted
    if public_key is not None:
        for at in range(0, len(sigs), 2):
            if not signature_ok(public_key, orjson.loads(data[sigs[at] : sigs[at + 1]])):
                return None  # the Python check names it
    if sink is not None:
        add, loads = sink.add, orjson.loads
        for at in range(0, len(spans), 2):
            add(loads(data[spans[at] : spans[at + 1]]))
    return SegmentResult(
        lines=lines,
        events=lines,
        checkpoints=checkpoints,
        signatures_checked=len(sigs) // 2,
        first=Edge(*first) if first is not None else None,
        last_seq=last_seq,
        last_hash=last_hash,
        unauth_head=head,
        unauth_reset=reset,
        unauth_tail=tail,
    )


def check_segment_fast(
    segment: Segment,
    key: bytes | None,
    public_key: Ed25519PublicKey | None,
    sink: EventSink | None = None,
    *,
    native: bool = True,
) -> SegmentResult:
    """`check_segment`, through the compiled core when it is there and vouches for the segment.

    `native=False` runs the Python check only (the tests' oracle).
    """
    if native:
        result = check_segment_native(segment, key, public_key, sink)
        if result is not None:
            return result
    return check_segment(segment, key, public_key, sink)

"""What a found canary token means for one request, and the one place a touch is recorded.

`canary_touched` is the only function that records a canary touch: it adds the touches to the
request's audit state, from which `RequestAuditor.finish` writes the event's `canary` list and
raises the `canary_touched` alert. Anything else that must learn of a touch (a metrics counter)
belongs there too, so no path can record a touch without it.

Whether a read *disclosed* the value is the response transform's own rule (reveal.py): the key
id names the practice (the keyring's, never the portal's word) and the caller's access must
allow that practice and class. A key this keyring does not hold, or a sealed keyring (KEK lost),
masks: `masked`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from proxy import metrics
from proxy.audit.events import CanaryTouch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

    from keys.keyring import Keyring
    from proxy.audit.requests import AuditState
    from proxy.canaries.scan import CanaryHit, CanaryScanner
    from proxy.transform.reveal import AccessPolicy, RevealContext

__all__ = ["canary_touched", "read_touches", "sent_touches", "watching_read"]


def read_touches(
    hits: Iterable[CanaryHit], keyring: Keyring, access: AccessPolicy
) -> list[CanaryTouch]:
    """Touches of canary tokens in a portal answer: `disclosed` to this caller, or `masked`."""
    return [
        CanaryTouch(
            hit.canary,
            hit.practice,
            hit.field_class,
            "disclosed"
            if keyring.practice_of(hit.kid) == hit.practice
            and access.allows(hit.practice, hit.field_class)
            else "masked",
        )
        for hit in hits
    ]


@contextlib.contextmanager
def watching_read(
    scanner: CanaryScanner,
    portal_body: bytes,
    context: Callable[[], RevealContext],
    state: AuditState | None,
) -> Iterator[None]:
    """Around the transform of a portal answer: record the canary touches it holds.

    Searched before the transform, on every body (a canary costs no time of its own), and
    recorded after it: `disclosed` or `masked` as the transform decided (`context()`: the one
    whose answer goes out, after a break-glass grant re-decided the body), or `masked` when it
    refused the body (502: nothing was shown, but the canary's record was asked for).
    """
    hits = scanner.find(portal_body) if scanner and state is not None else frozenset()
    if not hits or state is None:
        yield
        return
    try:
        yield
    except BaseException:
        canary_touched(
            state,
            [CanaryTouch(h.canary, h.practice, h.field_class, "masked") for h in sorted(hits)],
        )
        raise
    decided = context()  # the context of the transform whose answer goes out
    canary_touched(state, read_touches(sorted(hits), decided.keyring, decided.access))


def sent_touches(hits: Iterable[CanaryHit]) -> list[CanaryTouch]:
    """Touches of canary tokens a request carried to the portal (a write or a search)."""
    return [CanaryTouch(h.canary, h.practice, h.field_class, "sent") for h in hits]


def canary_touched(state: AuditState, touches: Iterable[CanaryTouch]) -> None:
    """Record that this request touched these canaries: THE one place every touch passes.

    The audit event flags them and the alert fires when the request finishes (one line per
    request, `RequestAuditor.finish`), and `phi_proxy_canary_touches_total` counts each one.
    """
    counter = metrics.current()
    for touch in touches:
        state.canary.append(touch)
        counter.canary_touched(touch.practice, touch.field_class, touch.how)

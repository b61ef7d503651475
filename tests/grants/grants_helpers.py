"""Values shared by the grant tests (a uniquely named module: tests/ is not a package)."""

from datetime import UTC, datetime, timedelta

from proxy.grants import GrantRequest
from proxy.identity import Caller, Subject

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
ALICE = Subject("https://login.a.test", "alice-sub")
BOB = Subject("https://login.a.test", "bob-sub")
ALICE_AT_B = Subject("https://login.b.test", "alice-sub")  # same sub, other issuer


def caller(subject):
    """A Caller for `subject`."""
    return Caller(subject)


def request_for(
    subject=ALICE,
    practice="pr-a",
    *,
    fields=None,
    ttl=timedelta(days=30),
    start=T0,
    not_before=None,
    by="sec-officer",
    reason="ticket-1",
):
    """A valid GrantRequest for ALICE at pr-a, with overrides."""
    return GrantRequest(
        subject=subject,
        practice=practice,
        field_classes=None if fields is None else frozenset(fields),
        expires_at=(not_before or start) + ttl,
        not_before=not_before,
        created_by=by,
        reason=reason,
    )

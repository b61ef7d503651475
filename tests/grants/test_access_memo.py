"""Access follows the grants' times exactly: memoized answers, and ends on whole seconds."""

from datetime import timedelta

from grants_helpers import ALICE, BOB, T0, request_for
from hypothesis import given
from hypothesis import strategies as st

from proxy.grants import Access, Grant, SQLiteGrantStore
from proxy.grants.access_memo import AccessMemo

MINUTES = st.integers(min_value=-120, max_value=120).map(lambda m: T0 + timedelta(minutes=m))


@st.composite
def grants(draw):
    """Grants of ALICE (and one of BOB's mixed in) starting, ending and revoked around T0."""
    found = []
    for index in range(draw(st.integers(min_value=0, max_value=5))):
        start = draw(MINUTES)
        found.append(
            Grant(
                id=f"g{index}",
                subject=draw(st.sampled_from([ALICE, ALICE, BOB])),
                practice=draw(st.sampled_from(["pr-a", "pr-b"])),
                field_classes=draw(st.none() | st.frozensets(st.sampled_from(["ssn", "history"]))),
                not_before=start,
                expires_at=start + timedelta(minutes=draw(st.integers(1, 90))),
                revoked_at=draw(st.none() | MINUTES),
                created_by="sec",
                reason="t",
                created_at=start,
            )
        )
    return tuple(found)


@given(grants(), st.lists(MINUTES, min_size=1, max_size=12))
def test_memo_answers_as_the_grants_do_at_every_moment(held, moments):
    """At any sequence of moments (the clock may step back), the memo equals a fresh answer."""
    memo = AccessMemo(ALICE, held, moments[0])
    for now in moments:
        assert memo.at(now) == Access.from_grants(ALICE, held, now)


def test_memo_reuses_the_answer_until_a_grant_ends():
    """Within the window no work is redone; at the expiry the answer changes at once."""
    grant = Grant(
        id="g1",
        subject=ALICE,
        practice="pr-a",
        field_classes=None,
        not_before=T0,
        expires_at=T0 + timedelta(minutes=5),
        revoked_at=None,
        created_by="sec",
        reason="t",
        created_at=T0,
    )
    memo = AccessMemo(ALICE, (grant,), T0)
    first = memo.at(T0 + timedelta(seconds=1))
    assert memo.at(T0 + timedelta(minutes=4, seconds=59)) is first
    assert first.allows("pr-a", "ssn")
    expired = memo.at(T0 + timedelta(minutes=5))
    assert not expired.allows("pr-a", "ssn")
    assert expired.lapsed_grant_ids_for("pr-a") == ("g1",)


async def test_a_grant_ends_at_the_whole_second_every_listing_prints(tmp_path):
    """A grant made at a fraction of a second ends at the printed second, not 0.65 s after it."""
    store = SQLiteGrantStore(tmp_path / "g.db")
    try:
        now = T0 + timedelta(microseconds=350_000)
        grant = await store.add(request_for(start=now, ttl=timedelta(hours=1)), now=now)
    finally:
        await store.close()
    printed = f"{grant.expires_at:%Y-%m-%d %H:%M:%S}"
    assert grant.expires_at.microsecond == 0
    assert printed == "2025-03-01 09:00:00"
    last_moment = grant.expires_at - timedelta(microseconds=1)
    assert Access.from_grants(ALICE, (grant,), last_moment).allows("pr-a", "ssn")
    assert not Access.from_grants(ALICE, (grant,), grant.expires_at).allows("pr-a", "ssn")

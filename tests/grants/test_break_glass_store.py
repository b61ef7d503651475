"""Break-glass in the grant store: open within the daily limit, list, sign off; both stores."""

import sqlite3
from datetime import timedelta

import pytest
from grants_helpers import ALICE, BOB, T0, caller, request_for

from proxy.grants import GrantError, GrantNotFound
from proxy.grants.break_glass import acknowledge, awaiting_signoff, overdue_findings
from proxy.grants.errors import BreakGlassLimitReached

pytestmark = pytest.mark.asyncio
HOUR = timedelta(hours=1)
REASON = "unconscious patient in ER, allergy history needed"


def emergency(subject=ALICE, practice="pr-a", *, start=T0):
    return request_for(
        subject,
        practice,
        fields={"ssn", "history"},
        ttl=HOUR,
        start=start,
        by="break-glass",
        reason=REASON,
    )


class TestOpen:
    async def test_a_new_break_glass_grant_has_a_bg_id_and_allows_its_classes(self, store):
        """The grant is an ordinary grant row with a bg_ id; access lists it with its reason."""
        opened = await store.open_break_glass(emergency(), now=T0, max_per_day=3)
        assert opened.new
        assert opened.grant.id.startswith("bg_")
        access = await store.access_for(caller(ALICE), T0 + timedelta(minutes=1))
        assert access.allows("pr-a", "ssn")
        assert not access.allows("pr-a", "insurance_id")
        assert access.break_glass_ids_for("pr-a") == (opened.grant.id,)
        assert access.break_glass[opened.grant.id] == REASON

    async def test_an_active_grant_at_the_practice_is_reused_not_counted(self, store):
        """A second emergency request for the same practice runs under the same grant."""
        first = await store.open_break_glass(emergency(), now=T0, max_per_day=1)
        again = await store.open_break_glass(
            emergency(start=T0 + timedelta(minutes=5)), now=T0 + timedelta(minutes=5), max_per_day=1
        )
        assert not again.new
        assert again.grant.id == first.grant.id

    async def test_the_daily_limit_counts_the_last_24_hours_revoked_ones_included(self, store):
        """max_per_day grants in 24 h, revoked or not; one more is refused until the oldest ages."""
        first = await store.open_break_glass(emergency(practice="pr-a"), now=T0, max_per_day=2)
        await store.revoke(grant_id=first.grant.id, by="officer", reason="test", now=T0)
        await store.open_break_glass(emergency(practice="pr-b"), now=T0, max_per_day=2)
        with pytest.raises(BreakGlassLimitReached) as refused:
            await store.open_break_glass(emergency(practice="pr-c"), now=T0, max_per_day=2)
        assert refused.value.count == 2
        assert "break_glass.max_per_day" in str(refused.value)
        later = T0 + timedelta(hours=24, seconds=1)
        opened = await store.open_break_glass(
            emergency(practice="pr-c", start=later), now=later, max_per_day=2
        )
        assert opened.new

    async def test_the_limit_is_per_person(self, store):
        """Another person's uses do not count against this one's."""
        await store.open_break_glass(emergency(BOB), now=T0, max_per_day=1)
        assert (await store.open_break_glass(emergency(ALICE), now=T0, max_per_day=1)).new

    async def test_ordinary_grants_do_not_count(self, store):
        """Grants made with phi-grants add are not break-glass uses."""
        await store.add(request_for(practice="pr-b"), now=T0)
        assert (await store.open_break_glass(emergency(), now=T0, max_per_day=1)).new
        assert [u.id for u in await store.break_glass_uses()] != []
        assert all(u.id.startswith("bg_") for u in await store.break_glass_uses())


class TestSignOff:
    async def test_pending_uses_are_listed_until_signed_off(self, store):
        """A use awaits sign-off; once acknowledged it leaves the pending list, with its note."""
        opened = await store.open_break_glass(emergency(), now=T0, max_per_day=3)
        assert [u.id for u in await awaiting_signoff(store)] == [opened.grant.id]
        use = await acknowledge(
            store, opened.grant.id, by="officer-kim", note="checked: ER admission", now=T0 + HOUR
        )
        assert use.signoff is not None
        assert use.signoff.by == "officer-kim"
        assert await awaiting_signoff(store) == []
        [listed] = await store.break_glass_uses()
        assert listed.signoff is not None
        assert listed.signoff.note == "checked: ER admission"

    async def test_a_sign_off_is_final(self, store):
        """A second sign-off of the same use is refused and names the first."""
        opened = await store.open_break_glass(emergency(), now=T0, max_per_day=3)
        await acknowledge(store, opened.grant.id, by="officer-kim", note="fine", now=T0)
        with pytest.raises(GrantNotFound, match=r"already signed off .* by officer-kim"):
            await acknowledge(store, opened.grant.id, by="officer-lee", note="again", now=T0)

    async def test_unknown_ids_and_ordinary_grants_are_refused(self, store):
        """Only bg_ grants are signed off; an unknown id says where to look."""
        grant = await store.add(request_for(), now=T0)
        with pytest.raises(GrantNotFound, match="phi-grants review"):
            await acknowledge(store, "bg_0000000000000000", by="o", note="n", now=T0)
        with pytest.raises(GrantError, match="ordinary grant"):
            await acknowledge(store, grant.id, by="o", note="n", now=T0)

    async def test_empty_or_unprintable_notes_are_refused(self, store):
        """The officer and the note are printable text."""
        opened = await store.open_break_glass(emergency(), now=T0, max_per_day=3)
        with pytest.raises(GrantError, match="note"):
            await acknowledge(store, opened.grant.id, by="officer", note="  ", now=T0)
        with pytest.raises(GrantError, match="note"):
            await acknowledge(store, opened.grant.id, by="officer", note="ok\x1b[2J", now=T0)

    async def test_uses_older_than_the_window_are_findings(self, store):
        """Unacknowledged past signoff_within: one finding per use, with the command to run."""
        old = await store.open_break_glass(emergency(practice="pr-a"), now=T0, max_per_day=3)
        fresh_at = T0 + timedelta(days=3)
        await store.open_break_glass(
            emergency(practice="pr-b", start=fresh_at), now=fresh_at, max_per_day=3
        )
        pending = await awaiting_signoff(store)
        found = overdue_findings(
            pending, now=fresh_at + HOUR, window=timedelta(days=2), command="phi-grants"
        )
        assert [f.grant_id for f in found] == [old.grant.id]
        assert found[0].code == "break_glass_unacknowledged"
        assert f"--acknowledge {old.grant.id}" in found[0].action


async def test_sqlite_sign_offs_cannot_be_changed_or_deleted(tmp_path):
    """The sign-off table refuses UPDATE, DELETE and REPLACE, like grant history."""
    from proxy.grants import SQLiteGrantStore

    path = tmp_path / "grants.sqlite3"
    store = SQLiteGrantStore(path)
    try:
        opened = await store.open_break_glass(emergency(), now=T0, max_per_day=3)
        await acknowledge(store, opened.grant.id, by="officer", note="fine", now=T0)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        for sql in (
            "UPDATE break_glass_signoffs SET note = 'x'",
            "DELETE FROM break_glass_signoffs",
            "INSERT OR REPLACE INTO break_glass_signoffs VALUES (?, 'a', 'b', 'c')",
        ):
            params = (opened.grant.id,) if "?" in sql else ()
            with pytest.raises(sqlite3.IntegrityError, match="final"):
                conn.execute(sql, params)
    finally:
        conn.close()

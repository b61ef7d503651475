"""The behaviour every GrantStore must have; parametrized over store factories (conftest)."""

from datetime import timedelta

import pytest
from grants_helpers import ALICE, ALICE_AT_B, BOB, T0, caller, request_for

from proxy.grants import NO_ACCESS, GrantError, GrantNotFound
from proxy.identity import Caller

pytestmark = pytest.mark.asyncio
HOUR = timedelta(hours=1)


class TestAccessFor:
    async def test_active_grant_allows(self, store):
        """An active all-fields grant allows any field class of its practice."""
        grant = await store.add(request_for(), now=T0)
        access = await store.access_for(caller(ALICE), T0 + HOUR)
        assert access.allows("pr-a", "ssn")
        assert access.allows("pr-a", "history")
        assert access.grant_ids_for("pr-a") == (grant.id,)

    async def test_expired_grant_allows_nothing(self, store):
        """From expires_at on, the grant allows nothing."""
        await store.add(request_for(ttl=HOUR), now=T0)
        assert (await store.access_for(caller(ALICE), T0 + HOUR - timedelta(seconds=1))).allows(
            "pr-a", "ssn"
        )
        assert not (await store.access_for(caller(ALICE), T0 + HOUR)).allows("pr-a", "ssn")

    async def test_not_yet_valid_grant(self, store):
        """A grant allows nothing before not_before and everything in scope from then on."""
        await store.add(request_for(not_before=T0 + 2 * HOUR, ttl=HOUR), now=T0)
        assert not (await store.access_for(caller(ALICE), T0 + HOUR)).allows("pr-a", "ssn")
        assert (await store.access_for(caller(ALICE), T0 + 2 * HOUR)).allows("pr-a", "ssn")

    async def test_revoked_grant_allows_nothing(self, store):
        """Once revoked, a grant allows nothing, even well before its expiry."""
        grant = await store.add(request_for(), now=T0)
        assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        await store.revoke(grant_id=grant.id, by="sec", reason="left", now=T0 + HOUR)
        assert not (await store.access_for(caller(ALICE), T0 + HOUR)).allows("pr-a", "ssn")
        assert (await store.access_for(caller(ALICE), T0 + HOUR)).grant_ids_for("pr-a") == ()

    async def test_practice_a_never_allows_practice_b(self, store):
        """A grant for practice A gives nothing in practice B."""
        await store.add(request_for(practice="pr-a"), now=T0)
        access = await store.access_for(caller(ALICE), T0)
        assert access.allows("pr-a", "ssn")
        assert not access.allows("pr-b", "ssn")

    async def test_field_class_scoping(self, store):
        """A grant listing field classes allows exactly those classes."""
        await store.add(request_for(fields={"ssn", "insurance_id"}), now=T0)
        access = await store.access_for(caller(ALICE), T0)
        assert access.allows("pr-a", "ssn")
        assert access.allows("pr-a", "insurance_id")
        assert not access.allows("pr-a", "history")

    async def test_grants_combine_within_a_practice(self, store):
        """Two grants for one practice allow the union of their field classes."""
        g1 = await store.add(request_for(fields={"ssn"}), now=T0)
        g2 = await store.add(request_for(fields={"history"}), now=T0)
        access = await store.access_for(caller(ALICE), T0)
        assert access.allows("pr-a", "ssn")
        assert access.allows("pr-a", "history")
        assert not access.allows("pr-a", "insurance_id")
        assert set(access.grant_ids_for("pr-a")) == {g1.id, g2.id}

    async def test_same_sub_at_other_issuer_gets_nothing(self, store):
        """A grant for (issuer A, sub) gives nothing to (issuer B, same sub)."""
        await store.add(request_for(subject=ALICE), now=T0)
        assert (await store.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        assert not (await store.access_for(caller(ALICE_AT_B), T0)).allows("pr-a", "ssn")

    async def test_other_subject_gets_nothing(self, store):
        """One person's grant never leaks to another person."""
        await store.add(request_for(subject=ALICE), now=T0)
        assert not (await store.access_for(caller(BOB), T0)).allows("pr-a", "ssn")

    async def test_anonymous_caller_gets_no_access(self, store):
        """An anonymous caller always gets the NO_ACCESS constant."""
        await store.add(request_for(), now=T0)
        assert await store.access_for(Caller.anonymous, T0) is NO_ACCESS


class TestAdd:
    async def test_grant_records_who_and_why(self, store):
        """add() returns the stored grant with creator, reason and UTC times."""
        grant = await store.add(request_for(fields={"ssn"}), now=T0)
        assert grant.created_by == "sec-officer"
        assert grant.reason == "ticket-1"
        assert grant.created_at == T0
        assert grant.not_before == T0
        assert grant.expires_at == T0 + timedelta(days=30)
        assert grant.field_classes == frozenset({"ssn"})
        assert [g.id for g in await store.list()] == [grant.id]
        assert (await store.list())[0] == grant

    async def test_ttl_cap(self, open_store):
        """A grant may last max_ttl from now; one second longer is refused with a clear error."""
        store = open_store(max_ttl=timedelta(days=90))
        await store.add(request_for(ttl=timedelta(days=90)), now=T0)
        with pytest.raises(GrantError, match=r"more than grants\.max_ttl \(90d\)"):
            await store.add(request_for(ttl=timedelta(days=90, seconds=1)), now=T0)
        assert len(await store.list()) == 1

    async def test_ttl_cap_counts_from_now_not_from_start(self, store):
        """A future start cannot push the expiry beyond max_ttl from now."""
        with pytest.raises(GrantError, match="max_ttl"):
            await store.add(
                request_for(not_before=T0 + timedelta(days=80), ttl=timedelta(days=30)), now=T0
            )

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"practice": "bad practice"}, "practice"),
            ({"fields": set()}, "empty"),
            ({"reason": "  "}, "reason"),
            ({"by": ""}, "grantor"),
        ],
    )
    async def test_invalid_requests_refused(self, store, changes, message):
        """Requests without a valid practice, fields, reason or grantor are refused."""
        with pytest.raises(GrantError, match=message):
            await store.add(request_for(**changes), now=T0)

    async def test_already_expired_request_refused(self, store):
        """A grant whose expiry is already past is refused."""
        with pytest.raises(GrantError, match="never be active"):
            await store.add(request_for(start=T0 - timedelta(days=2), ttl=HOUR), now=T0)


class TestRevoke:
    async def test_revoke_by_id_records_who_and_why(self, store):
        """Revoking by id returns the grant with revoked_at/by/reason set."""
        grant = await store.add(request_for(), now=T0)
        [revoked] = await store.revoke(grant_id=grant.id, by="ciso", reason="left", now=T0 + HOUR)
        assert revoked.id == grant.id
        assert (revoked.revoked_at, revoked.revoked_by, revoked.revoke_reason) == (
            T0 + HOUR,
            "ciso",
            "left",
        )

    async def test_revoke_twice_refused(self, store):
        """A revoked grant cannot be revoked again; the error says when and by whom."""
        grant = await store.add(request_for(), now=T0)
        await store.revoke(grant_id=grant.id, by="ciso", reason="left", now=T0)
        with pytest.raises(GrantNotFound, match="already revoked"):
            await store.revoke(grant_id=grant.id, by="ciso", reason="again", now=T0)

    async def test_revoke_unknown_id(self, store):
        """Revoking an id that does not exist raises GrantNotFound."""
        with pytest.raises(GrantNotFound, match="no grant has id"):
            await store.revoke(grant_id="g_missing", by="ciso", reason="x", now=T0)

    async def test_revoke_subject_at_practice_only(self, store):
        """Revoking by subject and practice leaves that person's other practices alone."""
        await store.add(request_for(practice="pr-a"), now=T0)
        await store.add(request_for(practice="pr-a", fields={"ssn"}), now=T0)
        await store.add(request_for(practice="pr-b"), now=T0)
        revoked = await store.revoke(subject=ALICE, practice="pr-a", by="c", reason="r", now=T0)
        assert {g.practice for g in revoked} == {"pr-a"}
        assert len(revoked) == 2
        access = await store.access_for(caller(ALICE), T0)
        assert not access.allows("pr-a", "ssn")
        assert access.allows("pr-b", "ssn")

    async def test_revoke_subject_without_grants(self, store):
        """Revoking a subject at a practice where they hold nothing raises GrantNotFound."""
        with pytest.raises(GrantNotFound, match="no unexpired grant"):
            await store.revoke(subject=BOB, practice="pr-a", by="c", reason="r", now=T0)


class TestOffboard:
    async def test_offboard_revokes_everything_of_that_person(self, store):
        """Offboarding revokes every grant of the person, including future ones, and no other."""
        await store.add(request_for(practice="pr-a"), now=T0)
        await store.add(request_for(practice="pr-b", fields={"ssn"}), now=T0)
        await store.add(request_for(practice="pr-c", not_before=T0 + HOUR), now=T0)
        await store.add(request_for(subject=BOB), now=T0)
        await store.add(request_for(subject=ALICE_AT_B), now=T0)
        revoked = await store.offboard(ALICE, by="hr-bot", reason="left the practice", now=T0)
        assert sorted(g.practice for g in revoked) == ["pr-a", "pr-b", "pr-c"]
        assert all(g.revoked_by == "hr-bot" for g in revoked)
        for moment in (T0, T0 + 2 * HOUR):
            assert (await store.access_for(caller(ALICE), moment)).practices == {}
        assert (await store.access_for(caller(BOB), T0)).allows("pr-a", "ssn")
        assert (await store.access_for(caller(ALICE_AT_B), T0)).allows("pr-a", "ssn")
        assert await store.offboard(ALICE, by="hr-bot", reason="again", now=T0) == []


class TestList:
    async def test_filters(self, store):
        """list() filters by practice, subject, activity and upcoming expiry."""
        a = await store.add(request_for(practice="pr-a", ttl=timedelta(days=3)), now=T0)
        b = await store.add(request_for(practice="pr-b", ttl=timedelta(days=30)), now=T0)
        c = await store.add(request_for(subject=BOB, practice="pr-a"), now=T0)
        d = await store.add(request_for(subject=BOB, practice="pr-b"), now=T0)
        await store.revoke(grant_id=d.id, by="c", reason="r", now=T0)
        ids = lambda grants: {g.id for g in grants}  # noqa: E731
        assert ids(await store.list()) == {a.id, b.id, c.id, d.id}
        assert ids(await store.list(practice="pr-a")) == {a.id, c.id}
        assert ids(await store.list(subject=BOB)) == {c.id, d.id}
        assert ids(await store.list(active_at=T0)) == {a.id, b.id, c.id}
        assert ids(await store.list(active_at=T0, expiring_within=timedelta(days=7))) == {a.id}
        assert ids(await store.list(active_at=T0 + timedelta(days=4))) == {b.id, c.id}


class TestRevocationVisibility:
    async def test_second_store_object_sees_revocation_on_next_call(self, open_store, backend):
        """A revocation through store B is honoured by store A's very next call, no sleeping.

        SQLite: the next call after the commit. PostgreSQL: the next call after the change
        notification arrived (the round trip is awaited, not slept through).
        """
        reader, writer = open_store(), open_store()
        grant = await writer.add(request_for(), now=T0)
        await backend.ready(reader)
        for _ in range(3):  # warm the reader's cache
            assert (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        async with backend.change_seen_by(reader):
            await writer.revoke(grant_id=grant.id, by="ciso", reason="left", now=T0)
        assert not (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")

    async def test_second_store_object_sees_new_grant_on_next_call(self, open_store, backend):
        """A grant added through store B is usable through store A's next call."""
        reader, writer = open_store(), open_store()
        await backend.ready(reader)
        assert not (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")
        async with backend.change_seen_by(reader):
            await writer.add(request_for(), now=T0)
        assert (await reader.access_for(caller(ALICE), T0)).allows("pr-a", "ssn")

    async def test_offboarding_reaches_a_warm_reader(self, open_store, backend):
        """Offboarding through store B empties store A's cached access to every practice."""
        reader, writer = open_store(), open_store()
        await writer.add(request_for(practice="pr-a"), now=T0)
        await writer.add(request_for(practice="pr-b"), now=T0)
        await backend.ready(reader)
        assert set((await reader.access_for(caller(ALICE), T0)).practices) == {"pr-a", "pr-b"}
        async with backend.change_seen_by(reader):
            await writer.offboard(ALICE, by="hr", reason="left", now=T0)
        assert (await reader.access_for(caller(ALICE), T0)).practices == {}

    async def test_ping(self, store):
        """A healthy store answers ping() with True."""
        assert await store.ping() is True

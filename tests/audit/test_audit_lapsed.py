"""Access.lapsed: revoked and expired grants are remembered for alerts, never for access."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy.grants import GrantRequest, SQLiteGrantStore
from proxy.identity import Caller, Subject

SUBJECT = Subject("https://idp.test.invalid", "carol")


def request(practice, *, expires_at):
    return GrantRequest(
        subject=SUBJECT,
        practice=practice,
        field_classes=None,
        expires_at=expires_at,
        created_by="tests",
        reason="test",
    )


class TestLapsedAccess:
    async def test_revoked_and_expired_grants_are_lapsed_not_allowed(self, tmp_path):
        """A revoked grant (a) and an expired one (b) show up as lapsed and allow nothing."""
        store = SQLiteGrantStore(tmp_path / "g.sqlite3")
        now = datetime.now(UTC)
        try:
            revoked = await store.add(request("a", expires_at=now + timedelta(days=1)), now=now)
            expired = await store.add(request("b", expires_at=now + timedelta(hours=1)), now=now)
            active = await store.add(request("c", expires_at=now + timedelta(days=1)), now=now)
            await store.revoke(grant_id=revoked.id, by="t", reason="left", now=now)
            later = now + timedelta(hours=2)
            access = await store.access_for(Caller(SUBJECT), later)
            assert not access.allows("a", "ssn")
            assert not access.allows("b", "ssn")
            assert access.allows("c", "ssn")
            assert access.lapsed_grant_ids_for("a") == (revoked.id,)
            assert access.lapsed_grant_ids_for("b") == (expired.id,)
            assert access.lapsed_grant_ids_for("c") == ()
            assert access.grant_ids_for("c") == (active.id,)
        finally:
            await store.close()

    async def test_long_lapsed_grants_are_forgotten(self, tmp_path):
        """A grant that lapsed more than LAPSED_LOOKBACK ago is not loaded at all."""
        from proxy.grants.model import LAPSED_LOOKBACK

        store = SQLiteGrantStore(tmp_path / "g.sqlite3")
        now = datetime.now(UTC)
        try:
            await store.add(request("a", expires_at=now + timedelta(days=1)), now=now)
            much_later = now + LAPSED_LOOKBACK + timedelta(days=2)
            access = await store.access_for(Caller(SUBJECT), much_later)
            assert access.lapsed_grant_ids_for("a") == ()
        finally:
            await store.close()

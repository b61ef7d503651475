import dataclasses
from datetime import timedelta

import pytest
from grants_helpers import ALICE, BOB, T0, request_for
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.grants import NO_ACCESS, Access, Grant
from proxy.grants.errors import GrantError

PRACTICES = ["pr-a", "pr-b", "pr-c"]
FIELDS = ["ssn", "insurance_id", "history"]


def grant(
    *, subject=ALICE, practice="pr-a", fields=None, start=T0, hours=1, revoked=None, gid="g1"
):
    """A Grant with test defaults."""
    return Grant(
        id=gid,
        subject=subject,
        practice=practice,
        field_classes=fields,
        not_before=start,
        expires_at=start + timedelta(hours=hours),
        revoked_at=revoked,
        created_by="c",
        reason="r",
        created_at=start,
    )


class TestGrant:
    def test_active_window_is_half_open(self):
        """A grant is active from not_before inclusive to expires_at exclusive."""
        g = grant()
        assert not g.is_active(T0 - timedelta(microseconds=1))
        assert g.is_active(T0)
        assert g.is_active(T0 + timedelta(minutes=59))
        assert not g.is_active(T0 + timedelta(hours=1))

    def test_revoked_is_inactive_whatever_the_clock(self):
        """A revoked grant is inactive even at times before its revocation timestamp."""
        g = grant(revoked=T0 + timedelta(minutes=30))
        assert not g.is_active(T0 + timedelta(minutes=1))

    def test_frozen(self):
        """A grant cannot be altered after creation."""
        with pytest.raises(dataclasses.FrozenInstanceError):
            grant().expires_at = T0  # type: ignore[misc]


class TestAccess:
    def test_no_access_allows_nothing(self):
        """NO_ACCESS allows no practice and no field, and names no grant."""
        assert Access.NO_ACCESS is NO_ACCESS
        assert not NO_ACCESS.allows("pr-a", "ssn")
        assert NO_ACCESS.grant_ids_for("pr-a") == ()

    def test_immutable(self):
        """Neither the Access object nor its practice table can be changed."""
        access = Access.from_grants(ALICE, [grant()], T0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            access.subject = BOB  # type: ignore[misc]
        with pytest.raises(TypeError):
            access.practices["pr-b"] = access.practices["pr-a"]  # type: ignore[index]

    def test_ignores_other_subjects_grants(self):
        """Grants of another subject passed in by mistake are ignored."""
        access = Access.from_grants(ALICE, [grant(subject=BOB)], T0)
        assert not access.allows("pr-a", "ssn")

    @settings(max_examples=150, deadline=None)
    @given(
        specs=st.lists(
            st.tuples(
                st.sampled_from(PRACTICES),
                st.none() | st.frozensets(st.sampled_from(FIELDS), min_size=1),
                st.integers(-3, 3),
                st.integers(1, 4),
                st.booleans(),
            ),
            max_size=6,
        ),
        practice=st.sampled_from(PRACTICES),
        field=st.sampled_from(FIELDS),
    )
    def test_allows_matches_the_definition(self, specs, practice, field):
        """allows(p, f) is true exactly when some active grant covers practice p and field f."""
        grants = [
            grant(
                practice=p,
                fields=f,
                start=T0 + timedelta(hours=s),
                hours=h,
                revoked=T0 if r else None,
                gid=f"g{i}",
            )
            for i, (p, f, s, h, r) in enumerate(specs)
        ]
        access = Access.from_grants(ALICE, grants, T0)
        expected = any(
            g.is_active(T0) and g.practice == practice and g.covers(field) for g in grants
        )
        assert access.allows(practice, field) == expected
        active_ids = {g.id for g in grants if g.is_active(T0) and g.practice == practice}
        assert set(access.grant_ids_for(practice)) == active_ids


class TestGrantNames:
    """Grant names follow the keystore's and the token format's rules."""

    @pytest.mark.parametrize("practice", ["practice-a\n", "a b", "-a", "x" * 65])
    def test_practice_ids_no_key_can_carry_are_refused(self, practice):
        with pytest.raises(GrantError, match="not a valid practice id"):
            request_for(practice=practice)

    def test_practice_ids_the_keystore_allows_are_grantable(self):
        assert request_for(practice="clinic@north").practice == "clinic@north"

    @pytest.mark.parametrize("field_class", ["SSN", "insurance-id", "ssn\n", "1ssn"])
    def test_classes_no_token_can_carry_are_refused(self, field_class):
        with pytest.raises(GrantError, match="not a valid class name"):
            request_for(fields=[field_class])

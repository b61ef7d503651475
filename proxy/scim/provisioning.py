"""What a SCIM change means for access: users map to subjects, groups to grants.

- A user is the subject ``scim.issuer|<externalId or userName>`` (scim.subject_from). When that
  attribute changes, the old subject is offboarded and the new one gets the user's group grants.
- ``active: false`` or DELETE offboards it: every unexpired grant, in every practice, revoked in
  one store call, which every replica sees on its next request (the store's change
  notification). Deprovisioning never waits for the SCIM directory: the user id names the
  subject, so an id this replica has never seen is still offboarded.
- A member added to a mapped group gets that group's grant (practice, classes, ttl); a member
  removed, or a group deleted, loses the grants that group gave, and no other.
- Every change is audited as a `grant_change` with actor ``scim`` and the SCIM request id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from proxy.grants.changes import change_details
from proxy.grants.store import GrantRequest
from proxy.identity.subject import Subject
from proxy.scim.directory import ScimGroupRow, ScimUser, sub_of_id, user_id_for

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from proxy.grants.model import Grant
    from proxy.grants.store import GrantStore
    from proxy.scim.directory import Directory
    from proxy.scim.settings import ScimSettings

__all__ = ["ACTOR", "Provisioner", "group_id_for", "scim_time"]

ACTOR = "scim"
_log = logging.getLogger("phi_proxy.scim")


def scim_time(moment: datetime) -> str:
    """RFC 3339 UTC to the second, as SCIM meta.created/lastModified carry it."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def group_id_for(display_name: str) -> str:
    """A stable group id: the same on every replica for the same display name.

    The '.' keeps it apart from user ids: it never decodes to a `sub`.
    """
    return "g." + hashlib.sha256(display_name.encode()).hexdigest()[:24]


def _group_reason(display_name: str) -> str:
    return f"SCIM group {display_name!r} membership"


class Provisioner:
    """Applies SCIM users and group memberships to the grant store, auditing every change."""

    def __init__(
        self,
        settings: ScimSettings,
        store: GrantStore,
        directory: Directory,
        record: Callable[[str, dict[str, Any], datetime], Awaitable[None]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.directory = directory
        self._record = record
        self._clock = clock
        #: One membership change at a time in this process (a group sync reads, then writes).
        self._lock = asyncio.Lock()

    def now(self) -> datetime:
        """The current time (the clock is passed in for tests)."""
        return self._clock()

    def sub_for(self, user_name: str, external_id: str | None) -> str | None:
        """The token `sub` a SCIM user with these attributes has (None: attribute missing)."""
        return user_name if self.settings.subject_from == "userName" else external_id

    def _subject(self, sub: str | None) -> Subject | None:
        if sub is None or self.settings.issuer is None:
            return None
        try:
            return Subject(self.settings.issuer, sub)
        except ValueError:
            return None

    def valid_sub(self, sub: str) -> bool:
        """True when `sub` can be half of a subject (printable, at most 1024 characters)."""
        return self._subject(sub) is not None

    async def subject_of(self, user_id: str) -> Subject | None:
        """The subject of a user: from the directory, else from its id; None: maps to nobody."""
        user = await self.directory.user(user_id)
        return self._subject(user.sub if user is not None else sub_of_id(user_id))

    @staticmethod
    def user_id(sub: str) -> str:
        """The SCIM id of the user whose tokens carry `sub`."""
        return user_id_for(sub)

    async def _audit(self, action: str, request_id: str, grants: list[Grant], **extra: Any) -> None:  # noqa: ANN401
        details = {**change_details(grants), "scim_request": request_id, **extra}
        await self._record(action, details, self.now())

    async def offboard(self, user_id: str, request_id: str, why: str) -> None:
        """Revoke every unexpired grant of the user's subject (audited even when none was left)."""
        await self.offboard_sub(sub_of_id(user_id), request_id, why, user_id=user_id)

    async def offboard_sub(
        self, sub: str | None, request_id: str, why: str, *, user_id: str | None = None
    ) -> None:
        """Offboard `sub` (or, with `user_id`, the subject the directory has for that user)."""
        if user_id is not None:
            user = await self.directory.user(user_id)
            sub = user.sub if user is not None else sub
        subject = self._subject(sub)
        if subject is None:
            return
        revoked = await self.store.offboard(
            subject, by=ACTOR, reason=f"SCIM {why} (request {request_id})", now=self.now()
        )
        _log.info(
            "scim offboard",
            extra={"fields": {"subject": str(subject), "revoked": len(revoked), "why": why}},
        )
        await self._audit("offboard", request_id, revoked, subject=str(subject), scim=why)

    async def grant_groups(self, user: ScimUser, request_id: str) -> None:
        """Give an active user the grant of every mapped group it is a member of."""
        for group_id in await self.directory.groups_of(user.id):
            group = await self.directory.group(group_id)
            if group is not None and group.mapped:
                await self.add_member_grant(group, user.id, request_id)

    async def add_member_grant(self, group: ScimGroupRow, user_id: str, request_id: str) -> None:
        """The mapped group's grant for one member, unless the user is inactive or unknown.

        Only a user this directory holds, and not deactivated, is granted: an id it does not
        know (deleted, offboarded, or never created here) grants nothing (fail closed).
        """
        mapping = self.settings.groups.get(group.display_name)
        user = await self.directory.user(user_id)
        if mapping is None or user is None or user.active is False:
            return
        subject = self._subject(user.sub)
        if subject is None:
            return
        now = self.now()
        request = GrantRequest(
            subject=subject,
            practice=mapping.practice,
            field_classes=None if mapping.classes is None else frozenset(mapping.classes),
            expires_at=now + mapping.ttl,
            created_by=ACTOR,
            reason=_group_reason(group.display_name),
        )
        grant = await self.store.add(request, now=now)
        await self._audit("add", request_id, [grant], scim_group=group.display_name)

    async def remove_member_grants(
        self, group: ScimGroupRow, user_id: str, request_id: str
    ) -> None:
        """Revoke the grants this group gave one member (grants from elsewhere stay)."""
        mapping = self.settings.groups.get(group.display_name)
        subject = await self.subject_of(user_id)
        if mapping is None or subject is None:
            return
        now = self.now()
        reason = _group_reason(group.display_name)
        revoked: list[Grant] = []
        for grant in await self.store.list(subject=subject, practice=mapping.practice):
            if grant.created_by == ACTOR and grant.reason == reason and grant.expires_at > now:
                if grant.revoked_at is not None:
                    continue
                revoked.extend(
                    await self.store.revoke(
                        grant_id=grant.id,
                        by=ACTOR,
                        reason=f"SCIM: left group {group.display_name!r} (request {request_id})",
                        now=now,
                    )
                )
        if revoked:
            await self._audit("revoke", request_id, revoked, scim_group=group.display_name)

    async def set_members(
        self, group: ScimGroupRow, wanted: dict[str, dict[str, Any]], request_id: str
    ) -> None:
        """Make the group's members `wanted`: grants for those added, revokes for those gone.

        Members that are not users mapped to a subject (nested groups, unmapped users) are
        kept as sent and grant nothing. Members the IdP sends again are renewed (`_renew`).
        """
        async with self._lock:
            current = set(await self.directory.members(group.id))
            await self.directory.set_members(group.id, wanted)
            for user_id in sorted(set(wanted) - current):
                await self.add_member_grant(group, user_id, request_id)
            for user_id in sorted(current - set(wanted)):
                await self.remove_member_grants(group, user_id, request_id)
            await self._renew(group, current & set(wanted), request_id)

    async def _renew(self, group: ScimGroupRow, kept: set[str], request_id: str) -> None:
        """A fresh grant for members whose grant from this group is past half its ttl.

        Only a grant still in effect is renewed: one that was revoked (an operator's
        `phi-grants offboard`, say) stays revoked until the IdP removes and re-adds the member
        or re-activates the user, so a sync never undoes an emergency offboard.
        """
        mapping = self.settings.groups.get(group.display_name)
        if mapping is None or not kept:
            return
        now = self.now()
        reason = _group_reason(group.display_name)
        in_effect = [
            g
            for g in await self.store.list(practice=mapping.practice, active_at=now)
            if g.created_by == ACTOR and g.reason == reason
        ]
        fresh = {g.subject for g in in_effect if g.expires_at - now > mapping.ttl / 2}
        ageing = {g.subject for g in in_effect} - fresh
        for user_id in sorted(kept):
            subject = await self.subject_of(user_id)
            if subject in ageing:
                await self.add_member_grant(group, user_id, request_id)

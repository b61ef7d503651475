"""What a grant is, and the per-request `Access` decision built from a caller's grants.

`Access` is computed once per request and is immutable: every later `allows()` in that request is a
dictionary lookup, so the answer cannot change halfway through a response and costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from proxy.identity.subject import Subject

__all__ = [
    "BREAK_GLASS_ID_PREFIX",
    "LAPSED_LOOKBACK",
    "NO_ACCESS",
    "Access",
    "Grant",
    "PracticeAccess",
    "utc",
]

#: The id prefix of break-glass grants (proxy.grants.break_glass_model; only the proxy makes them).
BREAK_GLASS_ID_PREFIX = "bg_"

#: How far back a store looks for a subject's revoked/expired grants to fill `Access.lapsed`.
LAPSED_LOOKBACK = timedelta(days=30)


def utc(moment: datetime) -> datetime:
    """Return `moment` in UTC; refuse naive datetimes, whose meaning depends on the host."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must be timezone-aware (UTC)")
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for one subject to read one practice's PHI (some or all field classes).

    `field_classes` None means every field class. A grant is active from `not_before` until just
    before `expires_at`, unless revoked. A revoked grant is inactive whatever the clocks say.
    """

    id: str
    subject: Subject
    practice: str
    field_classes: frozenset[str] | None
    not_before: datetime
    expires_at: datetime
    revoked_at: datetime | None
    created_by: str
    reason: str
    created_at: datetime
    revoked_by: str | None = None
    revoke_reason: str | None = None

    def is_active(self, now: datetime) -> bool:
        """True when not revoked and `not_before <= now < expires_at`."""
        return self.revoked_at is None and self.not_before <= now < self.expires_at

    def covers(self, field_class: str) -> bool:
        """True when this grant includes `field_class`."""
        return self.field_classes is None or field_class in self.field_classes


@dataclass(frozen=True, slots=True)
class PracticeAccess:
    """What a caller may read in one practice, and which grants say so."""

    all_fields: bool
    field_classes: frozenset[str]
    grant_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Access:
    """The immutable answer to "what may this caller read, right now?" for one request."""

    subject: Subject | None
    practices: Mapping[str, PracticeAccess] = field(default_factory=lambda: MappingProxyType({}))
    #: Practice → ids of this subject's revoked or expired grants there (for alerts only; a
    #: lapsed grant never allows anything). Stores fill it from recently lapsed grants.
    lapsed: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: Grant id → reason of each active break-glass grant (ids starting ``bg_``), so every
    #: disclosure through one is audited with its reason and alerted on.
    break_glass: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))

    NO_ACCESS: ClassVar[Access]

    @classmethod
    def from_grants(cls, subject: Subject, grants: Iterable[Grant], now: datetime) -> Access:
        """Combine the grants of `subject` that are active at `now` (others are ignored)."""
        merged: dict[str, tuple[bool, set[str], list[str]]] = {}
        lapsed: dict[str, list[str]] = {}
        emergency: dict[str, str] = {}
        for grant in grants:
            if grant.subject != subject:
                continue
            if not grant.is_active(now):
                if grant.revoked_at is not None or grant.expires_at <= now:
                    lapsed.setdefault(grant.practice, []).append(grant.id)
                continue
            all_fields, classes, ids = merged.setdefault(grant.practice, (False, set(), []))
            if grant.field_classes is None:
                all_fields = True
            else:
                classes |= grant.field_classes
            ids.append(grant.id)
            merged[grant.practice] = (all_fields, classes, ids)
            if grant.id.startswith(BREAK_GLASS_ID_PREFIX):
                emergency[grant.id] = grant.reason
        practices = {
            practice: PracticeAccess(all_fields, frozenset(classes), tuple(sorted(ids)))
            for practice, (all_fields, classes, ids) in merged.items()
        }
        gone = {practice: tuple(sorted(ids)) for practice, ids in lapsed.items()}
        return cls(
            subject,
            MappingProxyType(practices),
            MappingProxyType(gone),
            MappingProxyType(emergency),
        )

    def allows(self, practice: str, field_class: str) -> bool:
        """True when an active grant lets this caller read `field_class` of `practice`."""
        scope = self.practices.get(practice)
        return scope is not None and (scope.all_fields or field_class in scope.field_classes)

    def grant_ids_for(self, practice: str) -> tuple[str, ...]:
        """The ids of the grants behind access to `practice` (empty when none), for audit."""
        scope = self.practices.get(practice)
        return scope.grant_ids if scope is not None else ()

    def break_glass_ids_for(self, practice: str) -> tuple[str, ...]:
        """Ids of the active break-glass grants behind access to `practice` (usually none)."""
        if not self.break_glass:
            return ()
        return tuple(g for g in self.grant_ids_for(practice) if g in self.break_glass)

    def lapsed_grant_ids_for(self, practice: str) -> tuple[str, ...]:
        """Ids of revoked or expired grants the caller held for `practice` (for alerts)."""
        return self.lapsed.get(practice, ())


NO_ACCESS = Access(None)
Access.NO_ACCESS = NO_ACCESS

"""The grant store contract, shared validation of new grants, and the factory that picks a store.

Every store implementation (SQLite for one host, PostgreSQL for a fleet) passes the same test suite
(tests/grants/test_grants_store_contract.py), so callers can rely on the contract below alone.
What both implementations must agree on (the columns they read, the rules for a revoke or a
listing, the words of a "not found") is stated here once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from keys.keyring import is_practice_id
from keys.token_format import is_field_class
from proxy.grants.durations import format_duration
from proxy.grants.errors import GrantError, GrantNotFound
from proxy.grants.model import Grant, utc

if TYPE_CHECKING:
    from datetime import datetime, timedelta

    from proxy.grants.break_glass_model import BreakGlassUse, BreakGlassUses, Opened
    from proxy.grants.model import Access
    from proxy.grants.settings import GrantSettings
    from proxy.identity.subject import Caller, Subject

__all__ = [
    "GRANT_COLUMNS",
    "GrantList",
    "GrantRequest",
    "GrantStore",
    "already_revoked",
    "check_list_filters",
    "check_revoke_target",
    "clean_change",
    "clean_text",
    "new_grant_id",
    "no_unexpired_grant",
    "open_grant_store",
    "unknown_grant",
]

GrantList = list[Grant]

#: The `grants` columns every store reads, in the order its row → Grant conversion expects.
GRANT_COLUMNS = (
    "id, issuer, sub, practice, field_classes, not_before, expires_at, revoked_at, "
    "created_by, reason, created_at, revoked_by, revoke_reason"
)

_MAX_TEXT = 1000


def new_grant_id() -> str:
    """A fresh, unguessable grant id such as ``g_3f9a0c1e5b7d2a64``."""
    return f"g_{secrets.token_hex(8)}"


class GrantStore(Protocol):
    """Where grants live. `access_for` is on every request's path; the rest is administration."""

    async def access_for(self, caller: Caller, now: datetime) -> Access:
        """What `caller` may read at `now`. Never raises: a store failure means NO_ACCESS."""
        ...

    async def add(self, request: GrantRequest, *, now: datetime) -> Grant:
        """Store a new grant; raise GrantError when the request breaks a rule (e.g. max_ttl)."""
        ...

    async def revoke(
        self,
        *,
        grant_id: str | None = None,
        subject: Subject | None = None,
        practice: str | None = None,
        by: str,
        reason: str,
        now: datetime,
    ) -> GrantList:
        """Revoke one grant by id, or every unexpired grant of `subject` at `practice`."""
        ...

    async def offboard(self, subject: Subject, *, by: str, reason: str, now: datetime) -> GrantList:
        """Revoke every unexpired grant of `subject`, in every practice; return what was revoked."""
        ...

    async def list(
        self,
        *,
        practice: str | None = None,
        subject: Subject | None = None,
        active_at: datetime | None = None,
        expiring_within: timedelta | None = None,
    ) -> GrantList:
        """Grants matching every filter given; `expiring_within` needs `active_at`."""
        ...

    async def open_break_glass(
        self, request: GrantRequest, *, now: datetime, max_per_day: int
    ) -> Opened:
        """Reuse the caller's active break-glass grant at the practice, or add one (`bg_` id).

        Raises BreakGlassLimitReached when `max_per_day` were opened in the last 24 hours.
        """
        ...

    async def break_glass_uses(self, *, pending_only: bool = False) -> BreakGlassUses:
        """Every break-glass use with its sign-off (or those awaiting one), oldest first."""
        ...

    async def sign_off_break_glass(
        self, grant_id: str, *, by: str, note: str, now: datetime
    ) -> BreakGlassUse:
        """Record the final sign-off of one break-glass use (GrantNotFound if none or done)."""
        ...

    async def ping(self) -> bool:
        """True when the store can be read right now (for /readyz)."""
        ...

    async def close(self) -> None:
        """Release connections and threads."""
        ...


def clean_text(name: str, value: str) -> str:
    """Strip `value`; raise GrantError unless it is 1-1000 printable characters."""
    value = value.strip()
    if not value or len(value) > _MAX_TEXT or not value.isprintable():
        raise GrantError(f"{name} must be printable text of 1 to {_MAX_TEXT} characters")
    return value


def clean_change(by: str, reason: str) -> tuple[str, str]:
    """The validated (by, reason) pair every revoke or offboard records."""
    return clean_text("the grantor (--by)", by), clean_text("the reason", reason)


def check_revoke_target(
    grant_id: str | None, subject: Subject | None, practice: str | None
) -> None:
    """A revoke names either one grant id, or a subject together with a practice."""
    if (grant_id is None) == (subject is None or practice is None):
        msg = "revoke needs either a grant id, or a subject together with a practice"
        raise ValueError(msg)


def check_list_filters(active_at: datetime | None, expiring_within: timedelta | None) -> None:
    """`expiring_within` counts from `active_at`, so a listing that gives one needs the other."""
    if expiring_within is not None and active_at is None:
        raise ValueError("expiring_within needs active_at")


def unknown_grant(grant_id: str) -> GrantNotFound:
    """The error for a revoke naming a grant id that no grant has."""
    return GrantNotFound(f"no grant has id {grant_id!r}; see: phi-grants list")


def already_revoked(grant_id: str, revoked_at: str, revoked_by: str) -> GrantNotFound:
    """The error for a revoke naming a grant that is already revoked (`revoked_at` as shown)."""
    return GrantNotFound(f"grant {grant_id} was already revoked at {revoked_at} by {revoked_by}")


def no_unexpired_grant(subject: Subject, practice: str | None) -> GrantNotFound:
    """The error for a revoke of a subject's grants at a practice when none is left to revoke."""
    return GrantNotFound(f"{subject} has no unexpired grant for practice {practice}")


@dataclass(frozen=True, slots=True)
class GrantRequest:
    """A validated request for a new grant; building one enforces every rule except max_ttl."""

    subject: Subject
    practice: str
    field_classes: frozenset[str] | None
    expires_at: datetime
    created_by: str
    reason: str
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        # The same rules as the keystore and the token format: a grant for a name no key or
        # token can carry would never match, and the caller would be masked without a word.
        if not is_practice_id(self.practice):
            raise GrantError(
                f"practice {self.practice!r} is not a valid practice id (1-64 letters, digits "
                "and . _ : @ -, starting with a letter or digit, as in `phi-keys list`)"
            )
        if self.field_classes is not None:
            if not self.field_classes:
                raise GrantError("the field class list is empty; omit it to grant all fields")
            for name in self.field_classes:
                if not is_field_class(name):
                    raise GrantError(
                        f"field class {name!r} is not a valid class name (lower-case letters, "
                        "digits and _, starting with a letter, at most 32: as under "
                        "fields.classes in the config, e.g. ssn, insurance_id, history)"
                    )
        object.__setattr__(self, "created_by", clean_text("the grantor (--by)", self.created_by))
        object.__setattr__(self, "reason", clean_text("the reason (--reason)", self.reason))
        try:
            utc(self.expires_at)
            if self.not_before is not None:
                utc(self.not_before)
        except ValueError as exc:
            raise GrantError(str(exc)) from None

    def build(self, grant_id: str, *, now: datetime, max_ttl: timedelta) -> Grant:
        """Make the Grant this request describes at `now`, enforcing `max_ttl` from `now`."""
        now = utc(now)
        not_before = utc(self.not_before) if self.not_before is not None else now
        # Whole seconds: every listing prints a grant's end to the second, so a grant must not
        # run on for a fraction of a second past the time an operator was shown.
        expires_at = utc(self.expires_at).replace(microsecond=0)
        if expires_at <= not_before or expires_at <= now:
            raise GrantError("the grant would never be active: its expiry is not after its start")
        if expires_at - now > max_ttl:
            raise GrantError(
                f"the grant would last until {expires_at:%Y-%m-%d %H:%M} UTC, more than "
                f"grants.max_ttl ({format_duration(max_ttl)}) from now; ask for a shorter --ttl "
                "(every grant must expire; renew it when it runs out)"
            )
        return Grant(
            id=grant_id,
            subject=self.subject,
            practice=self.practice,
            field_classes=self.field_classes,
            not_before=not_before,
            expires_at=expires_at,
            revoked_at=None,
            created_by=self.created_by,
            reason=self.reason,
            created_at=now,
        )


def open_grant_store(settings: GrantSettings, *, application_name: str = "phi-proxy") -> GrantStore:
    """Open the store the settings name: an SQLite file, or a PostgreSQL database.

    Synchronous for both. The SQLite store opens (and migrates) its file here and raises
    GrantStoreUnavailable when it cannot; the PostgreSQL store connects on first use, so a
    replica starts while the database is down and answers "no access" until it is back.
    `application_name` labels PostgreSQL connections (pg_stat_activity) by program.
    """
    if settings.is_postgres:
        from proxy.grants.postgres_store import PostgresGrantStore  # noqa: PLC0415 - optional dep

        return PostgresGrantStore(
            settings.store,
            schema=settings.pg_schema,
            max_ttl=settings.max_ttl,
            timeout=settings.timeout_seconds,
            error_log_interval=settings.error_log_interval_seconds,
            pool_size=settings.pool_size,
            listen_check_interval=settings.listen_check_seconds,
            application_name=application_name,
        )
    from proxy.grants.sqlite_store import SQLiteGrantStore  # noqa: PLC0415 - import cycle

    return SQLiteGrantStore(
        settings.sqlite_path,
        max_ttl=settings.max_ttl,
        busy_timeout=settings.busy_timeout_seconds,
        error_log_interval=settings.error_log_interval_seconds,
    )

"""Break-glass on the request path: read the header, decide, open the emergency grant.

The pipeline calls `ask` once the caller is known (before anything reaches the portal) and
`open_for` after a response transform withheld PHI. A caller without the configured claim is
never given anything: the header is ignored for access and noted for an alert. A caller with it
and a usable reason gets a grant for the one practice the answer needs (the read route's
practice, else the practice of the withheld tokens), written through the grant store like any
other grant, so every replica sees it on its next request. The header itself never reaches the
portal: `proxy.forward.headers` strips it from every request, whether break-glass is on or off.

Refusals (each a JSON error the client sees, and an audit event with the outcome):
    400 break_glass_reason_invalid     reason too short, too long, repeated or with control chars
    409 break_glass_several_practices  the answer holds PHI of several practices: ask for one
    429 break_glass_limit_reached      break_glass.max_per_day grants in the last 24 hours
    503 break_glass_unavailable        the grant store could not record the grant
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from aiohttp import web

from proxy.audit.requests import AUDIT_STATE_KEY
from proxy.errors import ProxyError
from proxy.grants.break_glass_model import BREAK_GLASS_BY
from proxy.grants.break_glass_request import (
    BREAK_GLASS_HEADER,
    ReasonRefused,
    claim_allows,
    parse_reason,
)
from proxy.grants.errors import BreakGlassLimitReached, GrantError, GrantStoreUnavailable
from proxy.grants.store import GrantRequest

if TYPE_CHECKING:
    from proxy.accesslog import AccessRecord
    from proxy.grants.break_glass_settings import BreakGlassSettings
    from proxy.grants.store import GrantStore
    from proxy.identity.subject import Caller
    from proxy.transform import TransformStats

__all__ = ["BREAK_GLASS_KEY", "BreakGlassAsk", "BreakGlassGate", "BreakGlassRefused"]

Outcome = Literal[
    "requested",  # authorized and valid; nothing decided yet
    "unauthorized",  # header without the claim: ignored for access, alerted
    "refused_reason",
    "refused_limit",
    "refused_several_practices",
    "store_unavailable",
    "audit_unavailable",  # the trail cannot be written: nothing is opened (on_failure: deny)
    "not_needed",  # nothing was withheld from the caller
    "other_practice",  # the withheld PHI is not the read route's practice's
    "granted",
    "reused",
]


class BreakGlassRefused(ProxyError):
    """A break-glass request the proxy refuses; `status` and `code` say which refusal."""

    def __init__(self, message: str, *, status: int, code: str) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(slots=True)
class BreakGlassAsk:
    """One request's break-glass header and what became of it (read by the auditor)."""

    authorized: bool
    outcome: Outcome
    reason: str | None = None  # set only for an authorized caller with a usable reason
    grant_id: str | None = None
    practice: str | None = None


BREAK_GLASS_KEY = web.RequestKey("phi_proxy_break_glass", BreakGlassAsk)


class BreakGlassGate:
    """The `break_glass:` settings and the grant store, as the pipeline uses them."""

    def __init__(self, settings: BreakGlassSettings, store: GrantStore) -> None:
        """Open grants in `store` within `settings`' claim, classes, TTL and daily limit."""
        self.settings = settings
        self.store = store
        self._classes = frozenset(settings.classes)

    def ask(self, request: web.Request, caller: Caller, record: AccessRecord) -> None:
        """Note the request's break-glass header (if any); BreakGlassRefused for a bad reason.

        Nothing is granted here: the portal has not answered yet, so which practice's PHI the
        answer holds is not known. A caller without the claim is noted, never refused.
        """
        values = request.headers.getall(BREAK_GLASS_HEADER, [])
        if not values:
            return
        settings = self.settings
        if caller.subject is None or not claim_allows(
            caller.claims, settings.claim, settings.value
        ):
            found = BreakGlassAsk(authorized=False, outcome="unauthorized")
        else:
            found = BreakGlassAsk(authorized=True, outcome="requested")
        request[BREAK_GLASS_KEY] = found
        if (state := request.get(AUDIT_STATE_KEY)) is not None:
            state.break_glass = found
        record.fields["break_glass"] = found.outcome
        if not found.authorized:
            return
        try:
            found.reason = parse_reason(values)
        except ReasonRefused as exc:
            self._note(found, "refused_reason", record)
            raise BreakGlassRefused(
                f"break-glass refused: {exc}", status=400, code="break_glass_reason_invalid"
            ) from None

    async def open_for(
        self,
        request: web.Request,
        caller: Caller,
        stats: TransformStats,
        *,
        route_practice: str | None,
        audit_denied: bool,
        record: AccessRecord,
    ) -> bool:
        """Open (or reuse) the emergency grant this answer needs; True when one now applies.

        True means the answer should be transformed again with the caller's new access.
        """
        found = request.get(BREAK_GLASS_KEY)
        if found is None or not found.authorized or found.reason is None:
            return False
        if audit_denied:
            self._note(found, "audit_unavailable", record)
            return False
        withheld = stats.withheld
        if not withheld:
            self._note(found, "not_needed", record)
            return False
        if route_practice is not None:
            if route_practice not in withheld:
                self._note(found, "other_practice", record)
                return False
            practice = route_practice
        elif len(withheld) > 1:
            self._note(found, "refused_several_practices", record)
            raise BreakGlassRefused(
                f"break-glass refused: this answer holds PHI of {len(withheld)} practices, and "
                "break-glass opens one practice at a time; ask for the one patient's record "
                "(or the practice's own URL)",
                status=409,
                code="break_glass_several_practices",
            )
        else:
            (practice,) = withheld
        await self._open(found, caller, practice, record)
        return True

    async def _open(
        self, found: BreakGlassAsk, caller: Caller, practice: str, record: AccessRecord
    ) -> None:
        settings = self.settings
        now = datetime.now(UTC)
        if caller.subject is None or found.reason is None:  # pragma: no cover - checked by ask
            raise RuntimeError("break-glass without a subject or reason")
        try:
            opened = await self.store.open_break_glass(
                GrantRequest(
                    subject=caller.subject,
                    practice=practice,
                    field_classes=self._classes,
                    expires_at=now + settings.max_ttl,
                    created_by=BREAK_GLASS_BY,
                    reason=found.reason,
                ),
                now=now,
                max_per_day=settings.max_per_day,
            )
        except BreakGlassLimitReached as exc:
            self._note(found, "refused_limit", record)
            raise BreakGlassRefused(
                str(exc), status=429, code="break_glass_limit_reached"
            ) from None
        except (GrantStoreUnavailable, GrantError):
            self._note(found, "store_unavailable", record)
            raise BreakGlassRefused(
                "break-glass could not be recorded: the grant store did not accept the "
                "emergency grant, so nothing was opened; try again, or call your security "
                "officer",
                status=503,
                code="break_glass_unavailable",
            ) from None
        found.grant_id = opened.grant.id
        found.practice = practice
        self._note(found, "granted" if opened.new else "reused", record)

    @staticmethod
    def _note(found: BreakGlassAsk, outcome: Outcome, record: AccessRecord) -> None:
        found.outcome = outcome
        record.fields["break_glass"] = outcome

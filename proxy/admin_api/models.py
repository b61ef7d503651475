"""What the admin API accepts and answers, as pydantic models: validation and OpenAPI in one place.

Requests are checked here first (shape, patterns, lengths), then by the very rules `phi-grants`
applies (proxy.grants.changes), so the API never accepts what the command would refuse. Field
names follow `phi-grants list --json` and `phi-audit report --format json`, so scripts read
all three alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from proxy.grants.durations import parse_duration
from proxy.grants.errors import GrantError
from proxy.grants.store import clean_text
from proxy.identity.subject import Subject as ParsedSubject

__all__ = [
    "AddGrant",
    "AdminIdentityOut",
    "ChangeResult",
    "GrantList",
    "GrantOut",
    "Offboard",
    "Problem",
    "ReportOut",
    "ReportRowOut",
    "ReviewOut",
    "RevokeGrants",
]

_REQUEST = ConfigDict(frozen=True, extra="forbid")
_ANSWER = ConfigDict(frozen=True)

#: ISSUER|SUB, as `phi-grants list` prints it: no '|' in the issuer, no control characters.
SUBJECT_PATTERN = r"^[^|\x00-\x1f\x7f-\x9f]{1,1024}\|[^\x00-\x1f\x7f-\x9f]{1,1024}$"
PRACTICE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$"
CLASS_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
#: One number and unit (12h, 30d, 4w, 90m) or whole seconds: every match is a duration
#: `phi-grants` reads (longer than zero, shorter than 100 years).
DURATION_PATTERN = r"^(?:[1-9][0-9]{0,3}[dhmDHM]|[1-9][0-9]{0,2}[wW]|[1-9][0-9]{0,7}[sS]?)$"
GRANT_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
#: A break-glass use's id: its grant's id, `bg_` and 16 hex digits.
BREAK_GLASS_ID_PATTERN = r"^bg_[0-9a-f]{16}$"


def _readable_subject(text: str) -> str:
    ParsedSubject.parse(text)  # ValueError (a 422): e.g. a character that is not printable
    return text


Subject = Annotated[
    str,
    Field(
        pattern=SUBJECT_PATTERN,
        description="The person: ISSUER|SUB exactly as tokens carry them "
        "(e.g. https://login.example.org|00u1abc).",
        examples=["https://login.example.org|00u1abc"],
    ),
    AfterValidator(_readable_subject),
]
Practice = Annotated[
    str, Field(pattern=PRACTICE_PATTERN, description="Practice id, as `phi-keys list` prints it.")
]
FieldClass = Annotated[str, Field(pattern=CLASS_PATTERN, description="A fields.classes name.")]


def _readable_duration(text: str) -> str:
    parse_duration(text)  # ValueError (a 422) for anything phi-grants would not read
    return text


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        description="A duration: one number and unit (30d, 12h, 45m, 4w), or whole seconds.",
        examples=["30d"],
    ),
    AfterValidator(_readable_duration),
]
#: Printable text with at least one character that is not a space.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"


def _readable_text(text: str) -> str:
    try:
        clean_text("the reason", text)
    except GrantError as exc:  # a 422 with the store's words
        raise ValueError(str(exc)) from None
    return text


Reason = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        pattern=TEXT_PATTERN,
        description="Why: printable text (kept in the grant history; never in the audit trail).",
    ),
    AfterValidator(_readable_text),
]
GrantId = Annotated[str, Field(pattern=GRANT_ID_PATTERN, description="Grant id, as listed (g_…).")]
Note = Annotated[
    str,
    Field(
        min_length=1,
        max_length=1000,
        pattern=TEXT_PATTERN,
        description="What you checked and concluded: printable text, kept with the sign-off "
        "and in the audit trail (name no patient).",
    ),
    AfterValidator(_readable_text),
]


class AddGrant(BaseModel):
    """A new grant: one person, one practice, some or all field classes, for a limited time."""

    model_config = _REQUEST
    subject: Subject
    practice: Practice
    fields: Annotated[list[FieldClass], Field(min_length=1, max_length=64)] | None = Field(
        None, description="Field classes covered; omit for every class."
    )
    ttl: Duration = Field(description="Lifetime from not_before (or now), at most grants.max_ttl.")
    not_before: datetime | None = Field(
        None, description="When the grant starts (RFC 3339 with a zone); omit for now."
    )
    reason: Reason


class RevokeGrants(BaseModel):
    """Revoke one grant by id, or every unexpired grant of a person at one practice."""

    model_config = _REQUEST
    grant_id: GrantId | None = Field(None, description="One grant (instead of subject+practice).")
    subject: Subject | None = Field(None, description="With practice: that person's grants there.")
    practice: Practice | None = Field(None, description="With subject.")
    reason: Reason


class Offboard(BaseModel):
    """Revoke every unexpired grant a person holds, in every practice."""

    model_config = _REQUEST
    subject: Subject
    reason: Reason = "offboarded"


class AcknowledgeBreakGlass(BaseModel):
    """Sign off one break-glass use (final), as `phi-grants review --acknowledge ID --note …`."""

    model_config = _REQUEST
    note: Note


class SignoffOut(BaseModel):
    """A signed-off break-glass use; the sign-off is in the audit trail with `by` as actor."""

    model_config = _ANSWER
    grant_id: str
    subject: str = Field(description="Who broke the glass.")
    practice: str
    opened_at: str
    by: str = Field(description="The administrator's subject (from the token), audited as actor.")
    note: str


class GrantOut(BaseModel):
    """One grant and where it stands now."""

    model_config = _ANSWER
    id: str
    subject: str
    practice: str
    fields: list[str] | None = Field(description="Field classes; null means every class.")
    state: Literal["active", "pending", "expired", "revoked"]
    not_before: str
    expires_at: str
    created_at: str
    created_by: str
    reason: str
    revoked_at: str | None
    revoked_by: str | None
    revoke_reason: str | None


class GrantList(BaseModel):
    """Grants matching the filters, oldest first."""

    model_config = _ANSWER
    grants: list[GrantOut]
    count: int


class ChangeResult(BaseModel):
    """What a change did; the same change is in the audit trail with `by` as its actor."""

    model_config = _ANSWER
    action: Literal["add", "revoke", "offboard"]
    by: str = Field(description="The administrator's subject (from the token), audited as actor.")
    grants: list[GrantOut]


class ReviewOut(BaseModel):
    """The access review, exactly as `phi-grants review --json` prints it (docs/grants.md)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    generated_at: str | None
    practice: str | None
    store: str
    checks: dict[str, Any]
    usage: dict[str, Any]
    grants: list[dict[str, Any]]
    findings: list[dict[str, Any]]
    finding_count: int


class ReportRowOut(BaseModel):
    """One (subject, record, field class): how often and when it was disclosed."""

    model_config = _ANSWER
    subject: str
    practice: str
    record: str
    field_class: str
    count: int
    first_seen: str
    last_seen: str


class ReportOut(BaseModel):
    """Who saw which records' which field classes: `phi-audit report` for one subject."""

    model_config = _ANSWER
    verified: bool = Field(description="False: the trail does not verify; rows may be incomplete.")
    problem: str | None = Field(description="Why the trail does not verify (null when it does).")
    events: int = Field(description="Events in the verified trail.")
    rows: list[ReportRowOut]


class AdminIdentityOut(BaseModel):
    """Who the API takes the caller to be (to check an IdP set-up)."""

    model_config = _ANSWER
    subject: str
    role_claim: str
    role: str


class Problem(BaseModel):
    """An error, as RFC 9457 problem details (application/problem+json)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: str = Field(description="A URN naming the kind of problem.")
    title: str
    status: int
    detail: str = Field(description="What happened, what it means, what to do.")
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        None, description="For invalid requests: each problem and where it is."
    )

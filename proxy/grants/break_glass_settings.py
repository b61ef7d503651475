"""The `break_glass:` section: who may open emergency access, to what, how long, how often.

Off by default. When on, a caller whose verified token carries `claim` with `value` may send
``X-PHI-Break-Glass: <reason>`` and get a short grant for the practice the request needs
(docs/identity-lifecycle.md). Everything here bounds that power: the classes it opens, how long
a grant lasts, how many a person may open per day, and how soon a security officer must sign
each use off before `phi-grants review` reports it.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from keys.token_format import is_field_class
from proxy.grants.durations import format_duration, parse_duration

__all__ = ["DEFAULT_BREAK_GLASS_TTL", "MAX_PER_DAY_LIMIT", "BreakGlassSettings"]

DEFAULT_BREAK_GLASS_TTL = timedelta(hours=1)
#: Break-glass is for minutes of emergency care: a longer grant is an ordinary grant.
_MAX_TTL_CEILING = timedelta(hours=24)
#: More uses than this a day is not an emergency procedure any more.
MAX_PER_DAY_LIMIT = 50
_MAX_CLAIM = 256


def _duration(value: object) -> object:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value


class BreakGlassSettings(BaseModel):
    """Emergency access: the claim that allows it and the limits that bound it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(
        default=False,
        description="Allow break-glass (X-PHI-Break-Glass) at all. Off by default: the header "
        "is then stripped and ignored.",
    )
    claim: str = Field(
        default="groups",
        description="The token claim that must carry `value`: a list (groups, roles) or a "
        "string (a space-separated one such as scope counts word by word). A dotted name "
        "such as realm_access.roles (Keycloak) is followed into nested objects when no claim "
        "has that exact name.",
    )
    value: str = Field(
        default="phi-break-glass",
        description="The group or role name that allows break-glass, e.g. phi-break-glass.",
    )
    classes: tuple[str, ...] = Field(
        default=(),
        description="Field classes a break-glass grant opens, e.g. [ssn, insurance_id, "
        "history]; each must be defined under fields.classes. Required when enabled.",
    )
    max_ttl: timedelta = Field(
        default=DEFAULT_BREAK_GLASS_TTL,
        description="How long a break-glass grant lasts: a duration such as '1h' or '30m'. "
        "At most 24h and at most grants.max_ttl.",
    )
    max_per_day: int = Field(
        default=3,
        ge=1,
        le=MAX_PER_DAY_LIMIT,
        description="Most break-glass grants one person may open in any 24 hours. One more is "
        "refused with 429 (break_glass_limit_reached).",
    )
    signoff_within: timedelta = Field(
        default=timedelta(days=3),
        description="How soon a security officer must sign off a use (phi-grants review "
        "--acknowledge); an older unacknowledged use is a review finding (exit 1).",
    )

    @field_validator("max_ttl", "signoff_within", mode="before")
    @classmethod
    def _parse_durations(cls, value: object) -> object:
        return _duration(value)

    @field_validator("max_ttl")
    @classmethod
    def _bound_ttl(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > _MAX_TTL_CEILING:
            raise ValueError(
                f"break_glass.max_ttl is {format_duration(value)}; it must be more than 0 and at "
                "most 24h (emergency access is for minutes; a longer need is an ordinary grant: "
                "phi-grants add)"
            )
        return value

    @field_validator("signoff_within")
    @classmethod
    def _bound_signoff(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > timedelta(days=90):
            raise ValueError(
                "break_glass.signoff_within must be more than 0 and at most 90d, e.g. 3d"
            )
        return value

    @field_validator("claim", "value")
    @classmethod
    def _check_text(cls, value: str) -> str:
        if not value.strip() or len(value) > _MAX_CLAIM or not value.isprintable():
            raise ValueError(
                f"must be printable text of 1 to {_MAX_CLAIM} characters, e.g. "
                "claim: groups and value: phi-break-glass"
            )
        return value

    @field_validator("classes", mode="before")
    @classmethod
    def _classes_list(cls, value: object) -> object:
        if isinstance(value, str):  # pydantic reports a ValueError as a config error
            raise ValueError(  # noqa: TRY004
                "break_glass.classes is a list, e.g. [ssn, insurance_id, history]"
            )
        return value

    @field_validator("classes")
    @classmethod
    def _check_classes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if not is_field_class(name):
                raise ValueError(
                    f"{name!r} is not a field class name (lower-case letters, digits and _, "
                    "as under fields.classes)"
                )
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _classes_when_enabled(self) -> BreakGlassSettings:
        if self.enabled and not self.classes:
            raise ValueError(
                "break_glass.enabled is true but break_glass.classes is empty: list the field "
                "classes an emergency opens, e.g. classes: [ssn, insurance_id, history]"
            )
        return self

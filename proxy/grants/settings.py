"""The `grants:` section of the config: where grants live and how long one may last."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from proxy.grants.durations import parse_duration

__all__ = ["DEFAULT_MAX_TTL", "GrantSettings"]

DEFAULT_MAX_TTL = timedelta(days=90)
_MAX_MAX_TTL = timedelta(days=366)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class GrantSettings(BaseModel):
    """Grant store location and the longest grant anyone may create."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str = Field(
        default="grants.sqlite3",
        description="Path of the SQLite grant database (relative to the config file). "
        "PostgreSQL URLs (postgresql://…) are reserved for a later release.",
    )
    max_ttl: timedelta = Field(
        default=DEFAULT_MAX_TTL,
        description="Longest lifetime of a grant, counted from when it is created: a duration "
        "such as '90d' or '12h', or a number of seconds. At most 366 days.",
    )
    error_log_interval_seconds: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="While the store cannot be read, log the failure at most once per interval "
        "(requests are answered 'no access' meanwhile).",
    )
    busy_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a write waits for another process's write lock before failing.",
    )

    @field_validator("store")
    @classmethod
    def _resolve_store(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "PostgreSQL grant stores are not supported yet; set grants.store to a file path "
                "(an SQLite database, e.g. grants.sqlite3)"
            )
        if _URL.match(value):
            raise ValueError("grants.store must be a file path (an SQLite database), not a URL")
        if not value.strip():
            raise ValueError("grants.store must not be empty")
        path = Path(value)
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        return str(path)

    @field_validator("max_ttl", mode="before")
    @classmethod
    def _parse_ttl(cls, value: object) -> object:
        if isinstance(value, str):
            return parse_duration(value)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        return value

    @field_validator("max_ttl")
    @classmethod
    def _bound_ttl(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0) or value > _MAX_MAX_TTL:
            raise ValueError("grants.max_ttl must be more than 0 and at most 366 days")
        return value

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file."""
        return Path(self.store)

"""The `grants:` section of the config: where grants live and how long one may last.

`store` is either a file path (the embedded SQLite store) or a ``postgresql://`` URL (the fleet
store, shared by every replica). A URL must not carry a password: it would end up in process
listings, shell history and config backups. The password comes from ``PGPASSWORD`` or a
``~/.pgpass`` file, both read by the PostgreSQL driver itself.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from keys.config_file import relative_to_config
from proxy.grants.durations import parse_duration
from proxy.postgres_url import (
    check_postgres_url,
    check_schema_name,
    describe_postgres_url,
    is_postgres_url,
)

__all__ = ["DEFAULT_MAX_TTL", "GrantSettings"]

DEFAULT_MAX_TTL = timedelta(days=90)
_MAX_MAX_TTL = timedelta(days=366)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class GrantSettings(BaseModel):
    """Grant store location and the longest grant anyone may create."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str = Field(
        default="grants.sqlite3",
        description="Path of the SQLite grant database (relative to the config file), or a "
        "PostgreSQL URL (postgresql://USER@HOST:5432/DBNAME) shared by a fleet of proxies. "
        "Never put a password in the URL: use PGPASSWORD or ~/.pgpass.",
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
        description="SQLite only: how long a write waits for another process's write lock "
        "before failing.",
    )
    timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="PostgreSQL only: the longest any grant-store call may take, connecting "
        "included. A request's grant check that takes longer is answered 'no access' (PHI "
        "masked); an administrative change that takes longer fails and changes nothing.",
    )
    pg_schema: str = Field(
        default="phi_proxy",
        description="PostgreSQL only: the schema holding the grant tables; created and migrated "
        "by phi-proxy. Lower-case letters, digits and '_'.",
    )
    pool_size: int = Field(
        default=10,
        ge=1,
        le=100,
        description="PostgreSQL only: most connections one proxy process opens for grant reads "
        "and writes (one more is kept for change notifications).",
    )
    listen_check_seconds: float = Field(
        default=5.0,
        ge=0.5,
        le=60,
        description="PostgreSQL only: how often the change-notification connection is checked. "
        "If it fails, the proxy stops caching grants until it has reconnected, so this bounds "
        "how long a silently broken network path can delay a revocation.",
    )

    @field_validator("store")
    @classmethod
    def _resolve_store(cls, value: str, info: ValidationInfo) -> str:
        if is_postgres_url(value):
            return check_postgres_url(value, setting="grants.store")
        if _URL.match(value):
            raise ValueError(
                "grants.store must be a file path (an SQLite database) or a postgresql:// URL"
            )
        if not value.strip():
            raise ValueError("grants.store must not be empty")
        return str(relative_to_config(Path(value), info))

    @field_validator("pg_schema")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        return check_schema_name(value, setting="grants.pg_schema")

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
    def is_postgres(self) -> bool:
        """True when grants live in PostgreSQL (a fleet), False for an SQLite file."""
        return is_postgres_url(self.store)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite database file."""
        return Path(self.store)

    def __repr_args__(self) -> list[tuple[str | None, object]]:
        """Show a PostgreSQL URL without its user name and query options."""
        return [
            (name, describe_postgres_url(value) if name == "store" and self.is_postgres else value)
            for name, value in super().__repr_args__()
        ]

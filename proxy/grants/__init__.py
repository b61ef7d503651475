"""Grants: may this caller read this practice's PHI, right now?

GrantStore (Protocol)      access_for(caller, now) -> Access; add / revoke / offboard / list
├── SQLiteGrantStore       the embedded default (one WAL-mode SQLite file)
└── PostgresGrantStore     the fleet store (proxy.grants.postgres_store; needs asyncpg)
Access                     immutable per-request answer; allows(practice, field_class)
open_grant_store(settings) picks the store the `grants:` config names
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (keys._lazy): CLIs start fast
    from proxy.grants.durations import format_duration, parse_duration
    from proxy.grants.errors import GrantError, GrantNotFound, GrantStoreUnavailable
    from proxy.grants.model import NO_ACCESS, Access, Grant, PracticeAccess
    from proxy.grants.settings import GrantSettings
    from proxy.grants.sqlite_store import SQLiteGrantStore
    from proxy.grants.store import GrantRequest, GrantStore, open_grant_store

__all__ = [
    "NO_ACCESS",
    "Access",
    "Grant",
    "GrantError",
    "GrantNotFound",
    "GrantRequest",
    "GrantSettings",
    "GrantStore",
    "GrantStoreUnavailable",
    "PracticeAccess",
    "SQLiteGrantStore",
    "format_duration",
    "open_grant_store",
    "parse_duration",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "proxy.grants.durations": (
            "format_duration",
            "parse_duration",
        ),
        "proxy.grants.errors": (
            "GrantError",
            "GrantNotFound",
            "GrantStoreUnavailable",
        ),
        "proxy.grants.model": (
            "NO_ACCESS",
            "Access",
            "Grant",
            "PracticeAccess",
        ),
        "proxy.grants.settings": ("GrantSettings",),
        "proxy.grants.sqlite_store": ("SQLiteGrantStore",),
        "proxy.grants.store": (
            "GrantRequest",
            "GrantStore",
            "open_grant_store",
        ),
    },
)

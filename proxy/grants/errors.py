"""Errors of the grant subsystem.

    PhiProxyError
    ├── GrantError              a grant request is refused (too long, bad subject, empty reason…)
    │   └── GrantNotFound       revoke named a grant that does not exist or is not active
    └── GrantStoreUnavailable   the grant store cannot be opened, read or written

`access_for` never raises either: when the store cannot be read it answers "no access".
"""

from __future__ import annotations

from keys.errors import PhiProxyError

__all__ = ["GrantError", "GrantNotFound", "GrantStoreUnavailable"]


class GrantError(PhiProxyError):
    """A request to change grants is refused; the message says why and what to ask instead."""


class GrantNotFound(GrantError):
    """No grant matches the revocation request (unknown id, or nothing active to revoke)."""


class GrantStoreUnavailable(PhiProxyError):
    """The grant store cannot be opened, read or written (file missing, locked, corrupt…)."""

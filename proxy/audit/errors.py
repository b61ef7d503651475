"""Audit errors: one class, under the project's root error, so every CLI maps it the same way."""

from __future__ import annotations

from keys.errors import PhiProxyError

__all__ = ["AuditError"]


class AuditError(PhiProxyError):
    """The audit trail cannot be configured, written or read; the message says what to do."""

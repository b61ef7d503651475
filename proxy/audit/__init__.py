"""The audit trail: tamper-evident evidence of every disclosure, grant change and key change.

    trail = open_trail(settings.audit)          # proxy: batched writer, async
    await trail.start(); trail.emit(event.to_json()); await trail.close()
    record_change(config_path, "grant_change", "revoke", actor=..., details={...})   # CLIs
    verify_files(trail_files(path), key=load_chain_key(settings))                     # auditors

Events carry names, ids and counts only — never a PHI value, a token or a credential. See
docs/audit.md for the line format, the chain, rotation and the failure policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys._lazy import lazy_exports

if TYPE_CHECKING:  # the names below load on first use (keys._lazy): CLIs start fast
    from proxy.audit.chain import Chain, Head
    from proxy.audit.errors import AuditError
    from proxy.audit.events import ChangeEvent, RecordAccess, RequestEvent, path_template
    from proxy.audit.factory import open_chain, open_sink, open_trail, record_change
    from proxy.audit.settings import AlertSettings, AuditSettings
    from proxy.audit.sink import AuditSink, FileSink, StdoutSink
    from proxy.audit.trail import AuditTrail
    from proxy.audit.verify import Problem, VerifyResult, trail_files, verify_files

__all__ = [
    "AlertSettings",
    "AuditError",
    "AuditSettings",
    "AuditSink",
    "AuditTrail",
    "Chain",
    "ChangeEvent",
    "FileSink",
    "Head",
    "Problem",
    "RecordAccess",
    "RequestEvent",
    "StdoutSink",
    "VerifyResult",
    "open_chain",
    "open_sink",
    "open_trail",
    "path_template",
    "record_change",
    "trail_files",
    "verify_files",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "proxy.audit.chain": (
            "Chain",
            "Head",
        ),
        "proxy.audit.errors": ("AuditError",),
        "proxy.audit.events": (
            "ChangeEvent",
            "RecordAccess",
            "RequestEvent",
            "path_template",
        ),
        "proxy.audit.factory": (
            "open_chain",
            "open_sink",
            "open_trail",
            "record_change",
        ),
        "proxy.audit.settings": (
            "AlertSettings",
            "AuditSettings",
        ),
        "proxy.audit.sink": (
            "AuditSink",
            "FileSink",
            "StdoutSink",
        ),
        "proxy.audit.trail": ("AuditTrail",),
        "proxy.audit.verify": (
            "Problem",
            "VerifyResult",
            "trail_files",
            "verify_files",
        ),
    },
)

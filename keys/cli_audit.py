"""What `phi-keys` writes to the audit trail about a key change: names, ids and counts only.

Kept apart from the command table (keys.cli) so the rule "which arguments may appear in the
trail" is on one page: never key material, PHI or a DSN (it may hold a password).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from keys.config_file import resolve_config_path

if TYPE_CHECKING:
    import argparse

__all__ = ["READ_ONLY_COMMANDS", "audit_key_change", "committed"]

#: Commands that change nothing; every other successful command is a key change to audit.
READ_ONLY_COMMANDS = frozenset({"list", "encrypt"})
#: Argument names whose values are ids, paths, flags or the operator's --reason, never key
#: material or PHI, for the audit event. (`dsn` is left out on purpose: it may hold a password.)
_AUDITED_ARGS = (
    "practice",
    "practices",
    "all",
    "after_shred",
    "kid",
    "kids",
    "key",
    "version",
    "generate_kek",
    "kek_provider",
    "new_kek",
    "new_config",
    "new_kek_provider",
    "old_kek_id",
    "new_kek_id",
    "generate",
    "no_backup",
    "force",
    "reason",
    "scan",
    "table",
    "canary_id",
    "field_classes",
    "remove",
)


def _audit_value(value: object) -> str | int | bool | list[str]:
    """An audited argument as JSON: scalars as they are, paths as text, lists as text items."""
    if isinstance(value, str | int | bool):
        return value
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)  # a Path (e.g. --new-kek): the path only, never the file's content


def committed(args: argparse.Namespace) -> bool:
    """True when a table or file run wrote values (`note_counts`), even if it then failed."""
    counts = getattr(args, "counts", None) or {}
    return bool(counts.get("values_written"))


def audit_key_change(args: argparse.Namespace, *, status: int | None) -> None:
    """Record a key change in the audit trail (names, ids and counts only).

    `status` is the command's exit status; anything but 0 (None: interrupted or an
    unexpected error) marks the event `partial`: the command committed some changes (the
    counts say how many) and then stopped or left something behind.
    """
    import getpass  # noqa: PLC0415 - only for a change

    from proxy.audit.factory import record_change  # noqa: PLC0415 - keys must not need proxy

    details: dict[str, object] = {
        name: _audit_value(value)
        for name in _AUDITED_ARGS
        if (value := getattr(args, name, None)) is not None and value is not False  # unset flags
    }
    counts = getattr(args, "counts", None)
    if counts:
        details["counts"] = dict(counts)
    if status != 0:
        details["partial"] = True
        details["exit_status"] = status
    try:
        actor: str | None = getpass.getuser()
    except (OSError, KeyError):
        actor = None
    record_change(
        resolve_config_path(getattr(args, "config", None)),
        "key_change",
        args.command,
        actor=actor,
        details=details,
    )

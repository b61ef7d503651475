"""What an audit event says, as frozen values; never a PHI value, a token or a credential.

Events are built from counts, names and ids the pipeline already holds: field class names,
practice ids, grant ids, record ids (the configured `fields.record.id_keys` value of the record,
e.g. a patient id), the subject, and the path *template* — ids in the path are replaced by
`{id}` and the query string is never included, because a search URL can carry an SSN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "CANARY_HOW",
    "CanaryTouch",
    "ChangeEvent",
    "RecordAccess",
    "RequestEvent",
    "canary_json",
    "iso_time",
    "parse_time",
    "path_template",
]

_VERSION_SEGMENT: Final = re.compile(r"^v\d{1,2}$")
_ID_MARKS: Final = frozenset("0123456789@%")
_MAX_SEGMENT: Final = 64


def iso_time(moment: datetime) -> str:
    """UTC with milliseconds (truncated, not rounded) and a Z: sortable as text."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time as UTC; one without a zone is taken as UTC, as events write it.

    Raises:
        ValueError: `text` is not such a time.
    """
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def path_template(path: str, route_template: str | None = None) -> str:
    """The path with every id-like segment replaced by `{id}`.

    Id-like: holding a digit, `@` or `%`, non-ASCII, or over 64 characters — such a segment
    may be a record id, a date of birth, an e-mail address or an SSN, so it is never written
    (`v1`, `v2` stay). A matched write route's own template is used as-is. No query string.
    """
    if route_template is not None:
        return route_template
    path = path.split("?", 1)[0]
    segments = []
    for segment in path.split("/"):
        id_like = (
            not segment.isascii()
            or len(segment) > _MAX_SEGMENT
            or (not _VERSION_SEGMENT.match(segment) and not _ID_MARKS.isdisjoint(segment))
        )
        segments.append("{id}" if segment and id_like else segment)
    return "/".join(segments)


@dataclass(frozen=True, slots=True)
class RecordAccess:
    """One record from which values were disclosed: whose, which record, which classes.

    Lines group these (`_record_groups`); `records.disclosed_records` reads them back.
    """

    practice: str
    record: str
    field_classes: tuple[str, ...]


def _record_groups(records: tuple[RecordAccess, ...]) -> list[dict[str, Any]]:
    """Line format 2's `records`: one group per (practice, sorted classes), all sorted.

    The plain reference form; `records.group_records` is the one-pass form the proxy writes,
    and tests/audit/test_audit_payload.py proves both seal to the same line.
    """
    rows = sorted(
        (r.practice, tuple(sorted(r.field_classes)), r.record) for r in records if r.field_classes
    )
    return [
        {"practice": practice, "field_classes": list(classes), "records": [r for *_, r in group]}
        for (practice, classes), group in groupby(rows, key=lambda row: row[:2])
    ]


#: How a request touched a canary: a token shown in clear, shown masked, or sent to the portal.
CANARY_HOW: Final = ("disclosed", "masked", "sent")


@dataclass(frozen=True, slots=True, order=True)
class CanaryTouch:
    """A canary token (docs/canaries.md) that passed through the proxy: ids only, never a value."""

    canary: str
    practice: str
    field_class: str
    how: str

    def to_json(self) -> dict[str, str]:
        """The touch as events and alert lines write it."""
        return {
            "canary": self.canary,
            "practice": self.practice,
            "field_class": self.field_class,
            "how": self.how,
        }


def canary_json(touches: Iterable[CanaryTouch]) -> list[dict[str, str]]:
    """An event's `canary` list: each distinct touch once, sorted."""
    return [t.to_json() for t in sorted(set(touches))]


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """A request that decrypted, kept, masked, encrypted or refused PHI."""

    ts: datetime
    request_id: str
    subject: str | None
    client: str | None
    method: str
    path: str
    status: int
    outcome: str
    decrypted: dict[str, int] = field(default_factory=dict)
    masked: dict[str, int] = field(default_factory=dict)
    plaintext_kept: dict[str, int] = field(default_factory=dict)
    encrypted: dict[str, int] = field(default_factory=dict)
    practices: tuple[str, ...] = ()
    grant_ids: tuple[str, ...] = ()
    records: tuple[RecordAccess, ...] = ()
    integrity_failures: int = 0
    lapsed_practices: tuple[str, ...] = ()
    audit_denied: bool = False
    #: Which process served it (`host:pid`): a fleet writes one chain, and an investigator
    #: must be able to tell the replicas' events apart (and match them to their own logs).
    replica: str | None = None
    #: Canary tokens this request carried or read (docs/canaries.md); the key is written only
    #: when there is one, so every other event keeps its bytes.
    canary: tuple[CanaryTouch, ...] = ()
    #: Break-glass flag, outcome and reasons (proxy.audit.break_glass_events); absent from the
    #: line when break-glass played no part in the request.
    break_glass: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The payload the chain seals (`type` tells the kinds apart)."""
        payload = {
            "type": "request",
            "ts": iso_time(self.ts),
            "request_id": self.request_id,
            "subject": self.subject,
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "outcome": self.outcome,
            "decrypted": dict(self.decrypted),
            "masked": dict(self.masked),
            "plaintext_kept": dict(self.plaintext_kept),
            "encrypted": dict(self.encrypted),
            "practices": list(self.practices),
            "grant_ids": list(self.grant_ids),
            "records": _record_groups(self.records),
            "integrity_failures": self.integrity_failures,
            "lapsed_practices": list(self.lapsed_practices),
            "audit_denied": self.audit_denied,
            "replica": self.replica,
        }
        if self.canary:
            payload["canary"] = canary_json(self.canary)
        if self.break_glass is not None:
            payload["break_glass"] = dict(self.break_glass)
        return payload


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    """A change (`grant_change`, `key_change`), or an administrator's read of the evidence.

    `admin_read`: someone looked at who saw which records (the audit report, the incident view,
    the break-glass queue). `details` holds ids and names only: grant ids, subjects, practices,
    key ids, versions, the filters of a read.
    """

    kind: str
    ts: datetime
    action: str
    actor: str | None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in {"grant_change", "key_change", "admin_read", "proxy"}:
            raise ValueError(f"unknown change event kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        """The payload the chain seals."""
        return {
            "type": self.kind,
            "ts": iso_time(self.ts),
            "action": self.action,
            "actor": self.actor,
            "details": dict(self.details),
        }

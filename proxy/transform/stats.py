"""What one transform did, for the access log and the audit event: counts and ids, no values."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

#: The compiled core's grouped facts (see `TransformStats.count_core_summary`).
CoreSummary = tuple[
    dict[str, int],
    dict[str, int],
    dict[str, int],
    list[str],
    list[str],
    dict[tuple[str, str], set[str]],
]

__all__ = ["MAX_INTEGRITY_EVENTS", "CoreSummary", "IntegrityEvent", "TransformStats"]

#: Integrity events kept per body; `integrity_failures` keeps counting beyond this.
MAX_INTEGRITY_EVENTS: Final = 100


@dataclass(frozen=True, slots=True)
class IntegrityEvent:
    """A token that could not be opened: its key id (None if unparseable) and a reason code.

    Reason codes: those of `Keyring.diagnose` (unknown-kid, key-retired, key-destroyed,
    not-authentic, bad-base64, …), plus `malformed` (the prefix without a parseable token),
    `nested-token` (a decrypted value that itself carries the prefix) and `header-mismatch`.
    """

    kid: str | None
    reason: str


@dataclass(slots=True)
class TransformStats:
    """Filled during one transform (one request); mutable, not shared between requests.

    `disclosures` maps (practice, record id) of every record from which something was
    disclosed — a token decrypted, or legacy plaintext kept because the caller may see it — to
    the field classes disclosed there: the audit trail's `records`, grouped as it writes them, so
    building the event needs no regrouping. `records` and `record_classes` are views of it.
    `withheld` names the practices whose tokens were masked because the caller holds no grant.
    """

    decrypted: Counter[str] = field(default_factory=Counter)
    masked: Counter[str] = field(default_factory=Counter)
    plaintext_kept: Counter[str] = field(default_factory=Counter)
    encrypted: Counter[str] = field(default_factory=Counter)
    practices: set[str] = field(default_factory=set)
    disclosures: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    withheld: set[str] = field(default_factory=set)
    integrity_failures: int = 0
    integrity_events: list[IntegrityEvent] = field(default_factory=list)

    def integrity(self, kid: str | None, reason: str) -> None:
        """Count one unopenable token (and keep the first MAX_INTEGRITY_EVENTS of them)."""
        self.integrity_failures += 1
        if len(self.integrity_events) < MAX_INTEGRITY_EVENTS:
            self.integrity_events.append(IntegrityEvent(kid, reason))

    def disclosed(
        self, practice: str, record_id: str | None, field_class: str | None = None
    ) -> None:
        """Note that a value of `practice` (in record `record_id`, if known) was shown."""
        self.practices.add(practice)
        if record_id is not None:
            classes = self.disclosures.get((practice, record_id))
            if classes is None:
                classes = self.disclosures[practice, record_id] = set()
            if field_class is not None:
                classes.add(field_class)

    def count_core_summary(self, summary: CoreSummary) -> None:
        """Add what the compiled core counted (`core/src/facts.rs`), as the walk would have.

        Six groups in first-seen order: (decrypted, masked, kept) class → count; the practices
        withheld; the practices shown; and (practice, record id) → classes shown there (fresh
        sets, owned by these stats from now on).
        """
        decrypted, masked, kept, withheld, practices, disclosures = summary
        self.decrypted.update(decrypted)
        self.masked.update(masked)
        self.plaintext_kept.update(kept)
        self.withheld.update(withheld)
        self.practices.update(practices)
        if self.disclosures.keys().isdisjoint(disclosures):  # the usual case: one C update
            self.disclosures.update(disclosures)
            return
        for key, classes in disclosures.items():
            self.disclosures.setdefault(key, set()).update(classes)

    @property
    def records(self) -> set[tuple[str, str]]:
        """(practice, record id) of every record from which something was disclosed."""
        return set(self.disclosures)

    @property
    def record_classes(self) -> set[tuple[str, str, str]]:
        """(practice, record id, field class) for every class disclosed from a record."""
        return {(p, r, c) for (p, r), classes in self.disclosures.items() for c in classes}

    @property
    def touched(self) -> bool:
        """True if the transform decrypted, masked, kept, encrypted or flagged anything."""
        return bool(
            self.decrypted
            or self.masked
            or self.plaintext_kept
            or self.encrypted
            or self.integrity_failures
        )

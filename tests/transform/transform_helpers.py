"""Shared values of the transform tests (a uniquely named module: `tests/` is no package)."""

from __future__ import annotations

from dataclasses import dataclass

from proxy.transform.testing import TEST_FIELDS

FIELDS = TEST_FIELDS
CLASSES = tuple(TEST_FIELDS["classes"])


@dataclass(frozen=True)
class Grants:
    """A real, minimal access decision: the set of (practice, class) pairs allowed."""

    pairs: frozenset[tuple[str, str]] = frozenset()

    def allows(self, practice: str, field_class: str) -> bool:
        return (practice, field_class) in self.pairs

    @classmethod
    def of(cls, *pairs: tuple[str, str]) -> Grants:
        return cls(frozenset(pairs))

    @classmethod
    def all_classes(cls, *practices: str) -> Grants:
        return cls(frozenset((p, c) for p in practices for c in CLASSES))


NOBODY = Grants()

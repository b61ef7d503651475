"""Shared values of the transform tests (a uniquely named module: `tests/` is no package)."""

from __future__ import annotations

from dataclasses import dataclass

FIELDS = {
    "classes": {
        "ssn": {"mask": {"keep_last": 4, "template": "***-**-{last}"}, "deterministic": True},
        "insurance_id": {"mask": {"text": "[hidden]"}},
        "history": {"mask": None},
    },
    "selectors": [
        {"class": "ssn", "keys": ["ssn", "social_security_number"]},
        {"class": "insurance_id", "keys": ["member_id"]},
        {"class": "history", "keys": ["history"]},
        {
            "class": "ssn",
            "path": "$..identifier[?(@.system=='http://hl7.org/fhir/sid/us-ssn')].value",
        },
    ],
    "record": {"practice_keys": ["practice_id"], "id_keys": ["patient_id", "id"]},
    "max_depth": 64,
}


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
        return cls(frozenset((p, c) for p in practices for c in ("ssn", "insurance_id", "history")))


NOBODY = Grants()

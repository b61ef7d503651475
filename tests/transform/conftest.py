"""Shared fixtures for the transform tests: real keyring, compiled policy, real access."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from keys.testing import make_keyring
from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.settings import FieldSettings

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


@pytest.fixture(scope="session")
def keyring():
    """Three practices with one active key each."""
    return make_keyring(["A", "B", "C"])


@pytest.fixture(scope="session")
def policy():
    """The policy compiled from FIELDS."""
    return FieldPolicy.compile(FieldSettings.model_validate(FIELDS))


@pytest.fixture
def make_ctx(policy, keyring):
    """Build a fresh RevealContext (own stats) for one simulated request."""

    def build(access=NOBODY, route_practice=None):
        return RevealContext(policy, keyring, access, route_practice, TransformStats())

    return build

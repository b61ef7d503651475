"""The synthetic world of the demo: two practices, their staff, patients and bookings.

Every value is made up. SSNs use area numbers 900-999, which are never issued; member ids say
DEMO; names are chosen to read as placeholders. Patients are numbered in the order they are
seeded, so practice-a's patients get ids 1-6 and practice-b's 7-12 in a fresh portal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = [
    "ISSUER",
    "PRACTICES",
    "STAFF",
    "Booking",
    "Patient",
    "Practice",
    "Staff",
    "bookings",
    "patients",
]

ISSUER: Final = "https://idp.demo.invalid"


@dataclass(frozen=True, slots=True)
class Practice:
    """A medical practice: the unit that owns data and keys."""

    id: str
    name: str


@dataclass(frozen=True, slots=True)
class Staff:
    """A person who logs in to the portal; `story` says what the demo expects them to see."""

    sub: str
    name: str
    practice: str
    story: str


@dataclass(frozen=True, slots=True)
class Patient:
    """One synthetic patient, as a booking clerk would type it in (PHI in plaintext)."""

    practice: str
    name: str
    date_of_birth: str
    ssn: str
    carrier: str
    member_id: str
    medical_history: str


@dataclass(frozen=True, slots=True)
class Booking:
    """One appointment request; `patient` is the patient's 1-based position in `patients()`."""

    practice: str
    patient: int
    starts_at: str
    provider: str
    visit_reason: str


PRACTICES: Final = (
    Practice("practice-a", "Lakeside Family Medicine"),
    Practice("practice-b", "Hillcrest Pediatrics"),
)

STAFF: Final = (
    Staff("alice", "Alice Current", "practice-a", "current staff of practice-a"),
    Staff("mallory", "Mallory Former", "practice-a", "left practice-a; her grant was revoked"),
    Staff("bob", "Bob Elsewhere", "practice-b", "staff of practice-b"),
)

_A: Final = (
    ("Ada Sample", "1981-04-12", "Seasonal allergies; appendectomy 2009 (synthetic)"),
    ("Ben Placeholder", "1975-09-30", "Type 2 diabetes since 2018 (synthetic)"),
    ("Cora Fictional", "1990-01-05", "Asthma, mild intermittent (synthetic)"),
    ("Dan Madeup", "1962-07-21", "Hypertension; penicillin allergy (synthetic)"),
    ("Eve Example", "1988-11-02", "Migraine with aura (synthetic)"),
    ("Finn Notreal", "1970-03-17", "Hypothyroidism (synthetic)"),
)
_B: Final = (
    ("Gus Pretend", "2015-06-08", "Recurrent otitis media (synthetic)"),
    ("Hana Dummy", "2018-02-14", "Peanut allergy (synthetic)"),
    ("Ivo Testcase", "2012-10-23", "ADHD, combined type (synthetic)"),
    ("Jo Standin", "2019-12-01", "Eczema (synthetic)"),
    ("Kit Mockup", "2016-05-19", "Febrile seizure 2019 (synthetic)"),
    ("Lu Fakename", "2013-08-27", "Asthma (synthetic)"),
)
_CARRIERS: Final = ("Demo Health Plan", "Sample Mutual", "Placeholder Care")


def patients() -> tuple[Patient, ...]:
    """Every patient, practice-a's first, in seeding order."""
    result: list[Patient] = []
    for practice, rows, letter in (("practice-a", _A, "A"), ("practice-b", _B, "B")):
        for number, (name, born, history) in enumerate(rows, start=1):
            serial = len(result) + 1
            result.append(
                Patient(
                    practice=practice,
                    name=name,
                    date_of_birth=born,
                    ssn=f"900-{serial:02d}-{1000 + serial * 111:04d}",
                    carrier=_CARRIERS[serial % len(_CARRIERS)],
                    member_id=f"DEMO-{letter}{number:03d}-{serial * 7919 % 100000:05d}",
                    medical_history=history,
                )
            )
    return tuple(result)


def bookings() -> tuple[Booking, ...]:
    """Two appointments per practice."""
    return (
        Booking("practice-a", 1, "2026-12-01T09:00:00", "Dr. Lake", "Allergy follow-up"),
        Booking("practice-a", 2, "2026-12-01T09:30:00", "Dr. Lake", "HbA1c review"),
        Booking("practice-b", 7, "2026-12-02T14:00:00", "Dr. Hill", "Ear pain, both sides"),
        Booking("practice-b", 8, "2026-12-02T14:30:00", "Dr. Hill", "Allergy action plan"),
    )

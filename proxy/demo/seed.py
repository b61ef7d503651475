"""Filling the demo: patients and bookings written through the proxy, then grants.

Seeding goes through the proxy's write routes, exactly as a clerk's browser would, so the
portal's database never sees a plaintext SSN, member id, birth date or history. Patients are
registered by each practice's staff (alice for practice-a, bob for practice-b), with their
bearer tokens: an SSN is encrypted deterministically, and the proxy encrypts such a class only
for a caller holding a grant for the practice (`require_grant: deterministic`, the default).
Bookings carry only randomized classes and are sent without a token, as a patient's would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from proxy.demo.data import ISSUER, STAFF, bookings, patients
from proxy.grants import GrantRequest
from proxy.identity import Subject

if TYPE_CHECKING:
    from proxy.grants import GrantStore

__all__ = ["GRANT_TTL", "SeedError", "SeededGrants", "create_grants", "seed_through_proxy"]

GRANT_TTL = timedelta(days=7)


class SeedError(RuntimeError):
    """The proxy or the portal refused a seeding request (the status is in the message)."""


@dataclass(frozen=True, slots=True)
class SeededGrants:
    """The grant ids the demo created, and when the live ones expire."""

    alice: str
    mallory_revoked: str
    bob: str
    expires_at: datetime


async def _post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], token: str | None = None
) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with session.post(url, json=body, headers=headers) as response:
        if response.status != 201:  # noqa: PLR2004 - 201 Created
            raise SeedError(f"seeding failed: POST {url} answered {response.status}")


async def seed_through_proxy(proxy_url: str, registrars: dict[str, str]) -> tuple[int, int]:
    """Create every patient and booking via the proxy at `proxy_url`; (patients, bookings).

    `registrars` maps a practice to the bearer token of staff holding a grant there.
    """
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        people = patients()
        for patient in people:
            await _post(
                session,
                f"{proxy_url}/api/practices/{patient.practice}/patients",
                {
                    "name": patient.name,
                    "date_of_birth": patient.date_of_birth,
                    "ssn": patient.ssn,
                    "insurance": {"carrier": patient.carrier, "member_id": patient.member_id},
                    "medical_history": patient.medical_history,
                },
                registrars[patient.practice],
            )
        visits = bookings()
        for booking in visits:
            await _post(
                session,
                f"{proxy_url}/api/bookings",
                {
                    "practice_id": booking.practice,
                    "patient_id": booking.patient,
                    "starts_at": booking.starts_at,
                    "provider": booking.provider,
                    "visit_reason": booking.visit_reason,
                },
            )
    return len(people), len(visits)


async def create_grants(store: GrantStore, *, now: datetime | None = None) -> SeededGrants:
    """alice: practice-a; mallory: practice-a, then revoked; bob: practice-b (all GRANT_TTL)."""
    now = now or datetime.now(UTC)
    expires = now + GRANT_TTL
    ids: dict[str, str] = {}
    for person in STAFF:
        grant = await store.add(
            GrantRequest(
                subject=Subject(ISSUER, person.sub),
                practice=person.practice,
                field_classes=None,
                expires_at=expires,
                created_by="phi-proxy demo",
                reason=f"demo: {person.story}",
            ),
            now=now,
        )
        ids[person.sub] = grant.id
    await store.revoke(
        grant_id=ids["mallory"],
        by="phi-proxy demo",
        reason="demo: left the practice",
        now=now,
    )
    return SeededGrants(ids["alice"], ids["mallory"], ids["bob"], expires)

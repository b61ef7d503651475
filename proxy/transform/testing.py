"""Both transform cores side by side on one body: for the property tests and `make fuzz`.

The compiled core must answer exactly as the pure-Python core does, or give up. `compare_cores`
runs both on the same body for fresh, identical request contexts and says how they differ:
different bytes, different audit facts, or a body the pure core refuses that the compiled core
answered anyway (a refusal is a security decision, never the compiled core's to skip).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from proxy.transform.errors import UnsafeBody
from proxy.transform.response import transform_json_pure

if TYPE_CHECKING:
    from collections.abc import Callable

    from proxy.transform.reveal import RevealContext
    from proxy.transform.stats import TransformStats

__all__ = ["EVERY_GRANT", "TEST_FIELDS", "CoreOutcome", "EveryGrant", "compare_cores", "facts_of"]

#: The `fields:` section the transform tests, the parity tests and the fuzz target share:
#: four classes with each kind of mask, key selectors, the FHIR identifier filter path.
TEST_FIELDS: Final = {
    "classes": {
        "ssn": {"mask": {"keep_last": 4, "template": "***-**-{last}"}, "deterministic": True},
        "insurance_id": {"mask": {"text": "[hidden]"}},
        "history": {"mask": None},
        "diagnosis": {"mask": "remove"},
    },
    "selectors": [
        {"class": "ssn", "keys": ["ssn", "social_security_number"]},
        {"class": "insurance_id", "keys": ["member_id"]},
        {"class": "history", "keys": ["history"]},
        {"class": "diagnosis", "keys": ["diagnosis", "reasonCode"]},
        {
            "class": "ssn",
            "path": "$..identifier[?(@.system=='http://hl7.org/fhir/sid/us-ssn')].value",
        },
    ],
    "record": {"practice_keys": ["practice_id"], "id_keys": ["patient_id", "id"]},
    "max_depth": 64,
}


class EveryGrant:
    """A caller holding a grant for every practice and class: staff writing their own data.

    Write routes encrypt a deterministic class only for such callers (`require_grant`), so the
    tests of what encryption does, rather than of who may ask for it, write as one.
    """

    def allows(self, _practice: str, _field_class: str) -> bool:
        """Every practice, every class."""
        return True


EVERY_GRANT: Final = EveryGrant()


def facts_of(stats: TransformStats) -> tuple[object, ...]:
    """Everything a transform reports for the access line and the audit trail, comparable.

    Counters and disclosures keep their insertion order (the access line and the audit event
    list them in that order); sets are sorted.
    """
    return (
        list(stats.decrypted.items()),
        list(stats.masked.items()),
        list(stats.plaintext_kept.items()),
        sorted(stats.practices),
        [(key, sorted(classes)) for key, classes in stats.disclosures.items()],
        sorted(stats.withheld),
        stats.integrity_failures,
        [(e.kid, e.reason) for e in stats.integrity_events],
    )


@dataclass(frozen=True, slots=True)
class CoreOutcome:
    """What one core made of one body: new bytes, or the reason it refused; and its facts."""

    body: bytes | None
    refused: str | None
    facts: tuple[object, ...]


def _pure(body: bytes, ctx: RevealContext) -> CoreOutcome:
    try:
        out = transform_json_pure(body, ctx)
    except UnsafeBody as exc:
        return CoreOutcome(None, exc.reason, facts_of(ctx.stats))
    return CoreOutcome(out, None, facts_of(ctx.stats))


def compare_cores(body: bytes, make_ctx: Callable[[], RevealContext]) -> str | None:
    """None if the cores agree on `body` (or the compiled one gave up); else how they differ.

    `make_ctx` builds a fresh context for one request (same policy, keyring and caller). The
    pure core always runs, so an exception other than a refusal surfaces even when the
    compiled core gives up.
    """
    reference = _pure(body, make_ctx())  # any error but a refusal propagates: a finding too
    ctx = make_ctx()
    native = ctx.policy.native
    if native is None:
        return None
    answered = native.transform(body, ctx)
    if answered is None:
        return None
    mine = CoreOutcome(answered, None, facts_of(ctx.stats))
    if reference.refused is not None:
        return f"the pure core refuses this body ({reference.refused}); the compiled core answered"
    if mine.body != reference.body:
        return "the cores wrote different bytes"
    if mine.facts != reference.facts:
        return f"the cores report different facts: {mine.facts!r} != {reference.facts!r}"
    return None

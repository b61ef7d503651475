"""Synthea-shaped FHIR R4 Bundles for the benchmark: deterministic, offline, any size.

The shape follows a real Synthea R4 patient bundle (the MIT-licensed `Lynwood354.json` sample
of microsoft/Tools-for-Health-Data-Anonymization): nothing is copied from it, only its layout
and the public identifier systems and code systems it uses. A bundle is one or more Patients
(extensions, identifiers for the Synthea id, medical record number, SSN, driver's licence and
passport, name, telecom, address with geolocation), the Organization/Location/Practitioner of
their care, then one block per encounter: Encounter, Condition, vital-sign and laboratory
Observations, MedicationRequest, Claim and ExplanationOfBenefit. Blocks are added until the
pretty-printed (2-space indent, like Synthea) bundle reaches the target size.

Observation decimals keep FHIR spellings: a decimal's spelling is its precision in FHIR, and
Synthea (Java BigDecimal) writes `8E+1` and `1.1E+2`; the generator writes those, `98.60` and
`0.000123` as raw JSON numbers, so a proxy that re-serializes numbers can be caught.

PHI values the example config (`config/proxy.example.yaml`) selects are written as plaintext or
as phi1 tokens of the project's Keyring (`phi=`):

* the SSN identifier's `value` (class `ssn`, selected by the path
  `$..[?(@.system=='http://hl7.org/fhir/sid/us-ssn')].value`; AES-SIV like the config says);
* `member_id` on each Claim's insurance and on the Coverage contained in each
  ExplanationOfBenefit (class `insurance_id`, key selector). FHIR R4 itself has no such
  element (a member number is `Coverage.subscriberId` or an identifier of type MB): it stands
  for the legacy portal field the example config's key selector targets;
* `visit_reason` on each Encounter (class `history`, key selector): free text, likewise a
  portal field, not a FHIR element.

The example config also selects the FHIR diagnoses (Condition codes, `reasonCode`, the claim
lines that bill a diagnosis, narratives) as `history` with `mask: remove`; the generator writes
those as plaintext, and a bundle names no practice, so the proxy removes them for every caller
(legacy plaintext of an unknown practice), grantees included, unless a read route names one.

Driver's licence and passport numbers stay plaintext: the example config selects neither.

`bundle()` returns `(bytes, facts)`; facts list every PHI value (class, plaintext, what was
written) and count resources, tokens, plaintext values and decimal spellings, so a test can pin
what the bytes contain. Run `python fhir.py [BYTES]` to print the facts of a bundle.
"""

from __future__ import annotations

import json
import random
import re
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import yaml

if TYPE_CHECKING:
    from collections.abc import Callable

    Encrypt = Callable[
        ..., str
    ]  # Keyring.encrypt(practice, field_class, plaintext, *, deterministic)

PRACTICE: Final = "practice-a"
DEFAULT_BYTES: Final = 500_000
#: The seed of the bundle `make bench` serves and the micro-benchmark transforms.
BENCH_SEED: Final = 8
CONTENT_TYPE: Final = "application/fhir+json"
#: Where the portal serves the benchmark bundle (a FHIR read of one Bundle).
PATH: Final = "/fhir/r4/Bundle/synthea-bench"
EXAMPLE_CONFIG: Final = Path(__file__).resolve().parent.parent / "config" / "proxy.example.yaml"

SSN_SYSTEM: Final = "http://hl7.org/fhir/sid/us-ssn"
DRIVERS_LICENSE_SYSTEM: Final = "urn:oid:2.16.840.1.113883.4.3.25"
PASSPORT_SYSTEM: Final = "http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber"
MRN_SYSTEM: Final = "http://hospital.smarthealthit.org"
SYNTHEA_SYSTEM: Final = "https://github.com/synthetichealth/synthea"
V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC: Final = "http://loinc.org"
SNOMED: Final = "http://snomed.info/sct"
UCUM: Final = "http://unitsofmeasure.org"
RXNORM: Final = "http://www.nlm.nih.gov/research/umls/rxnorm"

#: The PHI members this generator writes: (class, JSON member name, where).
PHI_FIELDS: Final = (
    ("ssn", "value", "Patient.identifier[system=us-ssn]"),
    ("insurance_id", "member_id", "Claim.insurance[], ExplanationOfBenefit.contained[Coverage]"),
    ("history", "visit_reason", "Encounter"),
)
#: The decimal spellings every bundle holds at least once (FHIR: spelling = precision).
DECIMAL_SPELLINGS: Final = ("8E+1", "1.1E+2", "98.60", "0.000123")

# A raw JSON number is carried through json.dumps as this string, then unquoted.
_RAW: Final = "\x00raw:"
_RAW_JSON: Final = re.compile(r'"\\u0000raw:([^"]+)"')

_GIVEN = ("Lynwood354", "Charla27", "Alva958", "Dorian41", "Mireya816", "Shelby12", "Kasey370")
_FAMILY = ("Powlowski563", "Konopelski743", "Gutkowski940", "Bernhard322", "Ziemann98")
_CITIES = (("Redmond", "98053"), ("Bellevue", "98004"), ("Issaquah", "98027"), ("Kent", "98030"))
_STREETS = ("Howe Run", "Feest Rapid", "Kertzmann Vale", "Bode Dale", "Nienow Mill")
_ENCOUNTERS = (
    ("185345009", "Encounter for symptom", "AMB"),
    ("410620009", "Well child visit (procedure)", "AMB"),
    ("185349003", "Encounter for check up (procedure)", "AMB"),
    ("162673000", "General examination of patient (procedure)", "AMB"),
    ("50849002", "Emergency room admission (procedure)", "EMER"),
)
_CONDITIONS = (
    ("195662009", "Acute viral pharyngitis (disorder)"),
    ("44465007", "Sprain of ankle"),
    ("444814009", "Viral sinusitis (disorder)"),
    ("10509002", "Acute bronchitis (disorder)"),
    ("38341003", "Hypertension"),
)
_MEDICATIONS = (
    ("849574", "Naproxen sodium 220 MG Oral Tablet"),
    ("313782", "Acetaminophen 325 MG Oral Tablet"),
    ("308182", "Amoxicillin 250 MG Oral Capsule"),
    ("314076", "lisinopril 10 MG Oral Tablet"),
)
_LABS = (  # LOINC code, display, UCUM unit, low, high, decimals
    ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 3.5, 11.0, 1),
    ("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 3.9, 5.6, 2),
    ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 17.0, 1),
    ("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 35.0, 50.0, 1),
    ("787-2", "MCV [Entitic volume] by Automated count", "fL", 80.0, 98.0, 1),
    ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150.0, 450.0, 1),
)
_TROPONIN = ("10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", "ng/mL")
_WORDS = (
    "sore throat",
    "fever",
    "cough",
    "ankle pain after fall",
    "follow-up",
    "hypertension",
    "medication review",
    "chest tightness",
    "referred by",
    "history of",
    "asthma",
    "penicillin allergy",
    "smoker",
    "family history of stroke",
    "headache",
    "insomnia",
)


def raw_number(spelling: str) -> str:
    """A JSON number written exactly as spelled (`8E+1` stays `8E+1`)."""
    float(spelling)  # a number, or ValueError
    return _RAW + spelling


def dumps(doc: object) -> bytes:
    """Pretty-printed like Synthea (2-space indent), raw numbers unquoted, UTF-8."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return _RAW_JSON.sub(r"\1", text).encode()


class _Builder:
    def __init__(
        self,
        rng: random.Random,
        *,
        phi: str,
        encrypt: Encrypt | None,
        practice: str,
        deterministic: frozenset[str],
        transaction: bool,
    ) -> None:
        if phi not in {"token", "plain", "mixed"}:
            raise ValueError(f"phi must be 'token', 'plain' or 'mixed', not {phi!r}")
        if phi != "plain" and encrypt is None:
            raise ValueError(f"phi={phi!r} needs encrypt= (Keyring.encrypt)")
        self.rng = rng
        self.phi = phi
        self.encrypt = encrypt
        self.practice = practice
        self.deterministic = deterministic
        self.transaction = transaction
        self.phi_values: list[dict[str, str]] = []
        self.spellings: Counter[str] = Counter()
        self.start_year = 2000

    # -- small pieces -------------------------------------------------------------------------

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def secret(self, field_class: str, member: str, plaintext: str, where: str) -> str:
        """Write a PHI value as plaintext or a token (by `phi`); remember what was written."""
        index = len(self.phi_values)
        as_token = self.phi == "token" or (self.phi == "mixed" and index % 2 == 0)
        written = plaintext
        if as_token:
            assert self.encrypt is not None  # noqa: S101 - checked in __init__
            written = self.encrypt(
                self.practice,
                field_class,
                plaintext,
                deterministic=field_class in self.deterministic,
            )
        self.phi_values.append(
            {
                "class": field_class,
                "member": member,
                "where": where,
                "plaintext": plaintext,
                "written": written,
                "form": "token" if as_token else "plaintext",
            }
        )
        return written

    def decimal(self, spelling: str) -> str:
        self.spellings[spelling] += 1
        return raw_number(spelling)

    def when(self, year: int) -> tuple[str, str]:
        month, day = self.rng.randrange(1, 13), self.rng.randrange(1, 29)
        hour, minute = self.rng.randrange(8, 17), self.rng.randrange(0, 60)
        start = f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:56-08:00"
        end = f"{year}-{month:02d}-{day:02d}T{hour:02d}:{minute // 2 + 29:02d}:56-08:00"
        return start, end

    def entry(self, resource: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}
        if self.transaction:
            out["request"] = {"method": "POST", "url": resource["resourceType"]}
        return out

    @staticmethod
    def concept(system: str, code: str, display: str, *, text: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
        if text:
            out["text"] = display
        return out

    @staticmethod
    def meta(profile: str) -> dict[str, Any]:
        return {"profile": [f"http://hl7.org/fhir/us/core/StructureDefinition/{profile}"]}

    def history(self) -> str:
        words: list[str] = []
        while sum(len(w) + 2 for w in words) < 120:
            words.append(self.rng.choice(_WORDS))
        return "; ".join(words)

    # -- resources ----------------------------------------------------------------------------

    def patient(self) -> dict[str, Any]:
        rng = self.rng
        pid = self.uuid()
        given, family = rng.choice(_GIVEN), rng.choice(_FAMILY)
        city, postal = rng.choice(_CITIES)
        ssn = f"999-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
        year = rng.randrange(1940, 2005)
        self.start_year = max(year + 1, 2000)

        def ident(code: str, display: str, system: str, value: str) -> dict[str, Any]:
            return {
                "type": self.concept(V2_0203, code, display),
                "system": system,
                "value": value,
            }

        resource = {
            "resourceType": "Patient",
            "id": pid,
            "meta": self.meta("us-core-patient"),
            "text": {
                "status": "generated",
                "div": '<div xmlns="http://www.w3.org/1999/xhtml">Generated by the phi-proxy '
                "benchmark (Synthea-shaped).</div>",
            },
            "extension": [
                {
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": {
                                "system": "urn:oid:2.16.840.1.113883.6.238",
                                "code": "2106-3",
                                "display": "White",
                            },
                        },
                        {"url": "text", "valueString": "White"},
                    ],
                },
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                    "valueString": f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}",
                },
                {
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                    "valueCode": rng.choice("MF"),
                },
                {
                    "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                    "valueAddress": {"city": city, "state": "Washington", "country": "US"},
                },
                {
                    "url": "http://synthetichealth.github.io/synthea/disability-adjusted-life-years",
                    "valueDecimal": rng.random(),
                },
                {
                    "url": "http://synthetichealth.github.io/synthea/quality-adjusted-life-years",
                    "valueDecimal": rng.uniform(10, 70),
                },
            ],
            "identifier": [
                {"system": SYNTHEA_SYSTEM, "value": pid},
                ident("MR", "Medical Record Number", MRN_SYSTEM, pid),
                {
                    "type": self.concept(V2_0203, "SS", "Social Security Number"),
                    "system": SSN_SYSTEM,
                    "value": self.secret("ssn", "value", ssn, f"Patient/{pid}.identifier"),
                },
                ident(
                    "DL",
                    "Driver's License",
                    DRIVERS_LICENSE_SYSTEM,
                    f"S999{rng.randrange(10**4, 10**5)}",
                ),
                ident(
                    "PPN",
                    "Passport Number",
                    PASSPORT_SYSTEM,
                    f"X{rng.randrange(10**7, 10**8)}X",
                ),
            ],
            "name": [{"use": "official", "family": family, "given": [given], "prefix": ["Mx."]}],
            "telecom": [
                {"system": "phone", "value": f"555-{rng.randrange(100, 999)}-1234", "use": "home"}
            ],
            "gender": rng.choice(("male", "female")),
            "birthDate": f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}",
            "address": [
                {
                    "extension": [
                        {
                            "url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                            "extension": [
                                {"url": "latitude", "valueDecimal": rng.uniform(47.3, 47.8)},
                                {"url": "longitude", "valueDecimal": rng.uniform(-122.4, -122.0)},
                            ],
                        }
                    ],
                    "line": [f"{rng.randrange(1, 999)} {rng.choice(_STREETS)}"],
                    "city": city,
                    "state": "WA",
                    "postalCode": postal,
                    "country": "US",
                }
            ],
            "maritalStatus": self.concept(
                "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "S", "Never Married"
            ),
            "multipleBirthBoolean": False,
            "communication": [{"language": self.concept("urn:ietf:bcp:47", "en-US", "English")}],
        }
        return self.entry(resource)

    def organization(self) -> tuple[list[dict[str, Any]], dict[str, str]]:
        org, loc, doc = self.uuid(), self.uuid(), self.uuid()
        name = "OVERLAKE BENCH MEDICAL CENTER"
        address = {
            "line": ["1035-116TH AVE NE"],
            "city": "BELLEVUE",
            "state": "WA",
            "postalCode": "98004",
            "country": "US",
        }
        entries = [
            self.entry(
                {
                    "resourceType": "Organization",
                    "id": org,
                    "meta": self.meta("us-core-organization"),
                    "identifier": [{"system": SYNTHEA_SYSTEM, "value": org}],
                    "active": True,
                    "type": [
                        self.concept(
                            "http://terminology.hl7.org/CodeSystem/organization-type",
                            "prov",
                            "Healthcare Provider",
                        )
                    ],
                    "name": name,
                    "telecom": [{"system": "phone", "value": "4256885000"}],
                    "address": [address],
                }
            ),
            self.entry(
                {
                    "resourceType": "Location",
                    "id": loc,
                    "meta": self.meta("us-core-location"),
                    "status": "active",
                    "name": name,
                    "telecom": [{"system": "phone", "value": "4256885000"}],
                    "address": address,
                    "position": {"longitude": -122.156489, "latitude": 47.597839},
                    "managingOrganization": {"reference": f"urn:uuid:{org}", "display": name},
                }
            ),
            self.entry(
                {
                    "resourceType": "Practitioner",
                    "id": doc,
                    "meta": self.meta("us-core-practitioner"),
                    "identifier": [
                        {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999999270"}
                    ],
                    "active": True,
                    "name": [{"family": "Roberts511", "given": ["Chi716"], "prefix": ["Dr."]}],
                    "address": [address],
                    "gender": "male",
                }
            ),
        ]
        return entries, {"org": org, "loc": loc, "doc": doc, "name": name}

    def observation(
        self,
        patient: str,
        encounter: str,
        when: str,
        code: tuple[str, str],
        *,
        category: str,
        value: dict[str, Any] | None = None,
        components: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self.uuid(),
            "meta": {"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]},
            "status": "final",
            "category": [
                self.concept(
                    "http://terminology.hl7.org/CodeSystem/observation-category",
                    category,
                    category,
                    text=False,
                )
            ],
            "code": self.concept(LOINC, *code),
            "subject": {"reference": f"urn:uuid:{patient}"},
            "encounter": {"reference": f"urn:uuid:{encounter}"},
            "effectiveDateTime": when,
            "issued": when.replace(":56-", ":56.033-"),
        }
        if value is not None:
            resource["valueQuantity"] = value
        if components is not None:
            resource["component"] = components
        return self.entry(resource)

    def quantity(self, spelling: str, unit: str) -> dict[str, Any]:
        return {"value": self.decimal(spelling), "unit": unit, "system": UCUM, "code": unit}

    def vitals(self, patient: str, encounter: str, when: str, first: bool) -> list[dict[str, Any]]:
        """Vital signs and labs; the first block holds every spelling of DECIMAL_SPELLINGS."""
        rng = self.rng

        def pick(special: str, ordinary: str) -> str:
            return special if first or rng.random() < 0.3 else ordinary

        height = f"{rng.uniform(150, 190):.1f}"
        weight = pick("8E+1", f"{rng.uniform(50, 110):.1f}")
        temperature = pick("98.60", f"{rng.uniform(97, 99.5):.2f}")
        systolic = pick("1.1E+2", f"{rng.randrange(100, 140)}.0")
        diastolic = pick("8E+1", str(rng.randrange(60, 95)))
        troponin = pick("0.000123", f"{rng.uniform(0.000005, 0.0004):.6f}")
        obs = [
            self.observation(
                patient,
                encounter,
                when,
                ("8302-2", "Body Height"),
                category="vital-signs",
                value=self.quantity(height, "cm"),
            ),
            self.observation(
                patient,
                encounter,
                when,
                ("29463-7", "Body Weight"),
                category="vital-signs",
                value=self.quantity(weight, "kg"),
            ),
            self.observation(
                patient,
                encounter,
                when,
                ("8310-5", "Body temperature"),
                category="vital-signs",
                value=self.quantity(temperature, "[degF]"),
            ),
            self.observation(
                patient,
                encounter,
                when,
                ("85354-9", "Blood Pressure"),
                category="vital-signs",
                components=[
                    {
                        "code": self.concept(LOINC, "8462-4", "Diastolic Blood Pressure"),
                        "valueQuantity": self.quantity(diastolic, "mm[Hg]"),
                    },
                    {
                        "code": self.concept(LOINC, "8480-6", "Systolic Blood Pressure"),
                        "valueQuantity": self.quantity(systolic, "mm[Hg]"),
                    },
                ],
            ),
            self.observation(
                patient,
                encounter,
                when,
                _TROPONIN[:2],
                category="laboratory",
                value=self.quantity(troponin, _TROPONIN[2]),
            ),
        ]
        for code, display, unit, low, high, digits in _LABS:
            obs.append(
                self.observation(
                    patient,
                    encounter,
                    when,
                    (code, display),
                    category="laboratory",
                    value=self.quantity(f"{rng.uniform(low, high):.{digits}f}", unit),
                )
            )
        return obs

    def block(self, patient: dict[str, Any], care: dict[str, str], first: bool) -> list[dict]:
        """One encounter and everything Synthea writes with it."""
        rng = self.rng
        pid = patient["resource"]["id"]
        name = patient["resource"]["name"][0]
        display = f"{name['given'][0]} {name['family']}"
        self.start_year += rng.randrange(0, 2)
        start, end = self.when(self.start_year)
        enc = self.uuid()
        code, enc_display, klass = rng.choice(_ENCOUNTERS)
        cond_code, cond_display = rng.choice(_CONDITIONS)
        med_code, med_display = rng.choice(_MEDICATIONS)
        cond, claim, eob, med = self.uuid(), self.uuid(), self.uuid(), self.uuid()
        doctor = {"reference": f"urn:uuid:{care['doc']}", "display": "Dr. Chi716 Roberts511"}
        facility = {"reference": f"urn:uuid:{care['loc']}", "display": care["name"]}
        subject = {"reference": f"urn:uuid:{pid}"}
        member = f"INS-{rng.randrange(10**9, 10**10)}"
        encounter = self.entry(
            {
                "resourceType": "Encounter",
                "id": enc,
                "meta": self.meta("us-core-encounter"),
                "identifier": [{"use": "official", "system": SYNTHEA_SYSTEM, "value": enc}],
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": klass,
                },
                "type": [self.concept(SNOMED, code, enc_display)],
                "subject": {**subject, "display": display},
                "participant": [{"individual": doctor}],
                "period": {"start": start, "end": end},
                "reasonCode": [self.concept(SNOMED, cond_code, cond_display, text=False)],
                "visit_reason": self.secret(
                    "history", "visit_reason", self.history(), f"Encounter/{enc}"
                ),
                "location": [{"location": facility}],
                "serviceProvider": {
                    "reference": f"urn:uuid:{care['org']}",
                    "display": care["name"],
                },
            }
        )
        condition = self.entry(
            {
                "resourceType": "Condition",
                "id": cond,
                "meta": self.meta("us-core-condition"),
                "clinicalStatus": self.concept(
                    "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "resolved",
                    "Resolved",
                    text=False,
                ),
                "verificationStatus": self.concept(
                    "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "confirmed",
                    "Confirmed",
                    text=False,
                ),
                "code": self.concept(SNOMED, cond_code, cond_display),
                "subject": subject,
                "encounter": {"reference": f"urn:uuid:{enc}"},
                "onsetDateTime": start,
                "recordedDate": start,
            }
        )
        medication = self.entry(
            {
                "resourceType": "MedicationRequest",
                "id": med,
                "meta": self.meta("us-core-medicationrequest"),
                "status": "stopped",
                "intent": "order",
                "medicationCodeableConcept": self.concept(RXNORM, med_code, med_display),
                "subject": subject,
                "encounter": {"reference": f"urn:uuid:{enc}"},
                "authoredOn": start,
                "requester": doctor,
                "dosageInstruction": [{"sequence": 1, "asNeededBoolean": True}],
            }
        )
        price = round(rng.uniform(80, 900), 2)
        items = [
            {
                "sequence": 1,
                "productOrService": self.concept(SNOMED, code, enc_display),
                "encounter": [{"reference": f"urn:uuid:{enc}"}],
            },
            {
                "sequence": 2,
                "diagnosisSequence": [1],
                "productOrService": self.concept(SNOMED, cond_code, cond_display),
            },
        ]
        claim_entry = self.entry(
            {
                "resourceType": "Claim",
                "id": claim,
                "status": "active",
                "type": self.concept(
                    "http://terminology.hl7.org/CodeSystem/claim-type",
                    "institutional",
                    "Institutional",
                    text=False,
                ),
                "use": "claim",
                "patient": {**subject, "display": display},
                "billablePeriod": {"start": start, "end": end},
                "created": end,
                "provider": {"reference": f"urn:uuid:{care['org']}", "display": care["name"]},
                "priority": self.concept(
                    "http://terminology.hl7.org/CodeSystem/processpriority",
                    "normal",
                    "Normal",
                    text=False,
                ),
                "facility": facility,
                "diagnosis": [
                    {"sequence": 1, "diagnosisReference": {"reference": f"urn:uuid:{cond}"}}
                ],
                "insurance": [
                    {
                        "sequence": 1,
                        "focal": True,
                        "coverage": {"display": "Humana"},
                        "member_id": self.secret(
                            "insurance_id", "member_id", member, f"Claim/{claim}.insurance"
                        ),
                    }
                ],
                "item": items,
                "total": {"value": price, "currency": "USD"},
            }
        )
        adjudication = [
            {
                "category": self.concept(
                    "https://bluebutton.cms.gov/resources/codesystem/adjudication",
                    code,
                    label,
                ),
                "amount": {"value": round(price * share, 2), "currency": "USD"},
            }
            for code, label, share in (
                (
                    "https://bluebutton.cms.gov/resources/variables/line_coinsrnc_amt",
                    "Line Beneficiary Coinsurance Amount",
                    0.2,
                ),
                (
                    "https://bluebutton.cms.gov/resources/variables/line_prvdr_pmt_amt",
                    "Line Provider Payment Amount",
                    0.8,
                ),
                (
                    "https://bluebutton.cms.gov/resources/variables/line_sbmtd_chrg_amt",
                    "Line Submitted Charge Amount",
                    1.0,
                ),
            )
        ]
        eob_entry = self.entry(
            {
                "resourceType": "ExplanationOfBenefit",
                "id": eob,
                "contained": [
                    {
                        "resourceType": "ServiceRequest",
                        "id": "referral",
                        "status": "completed",
                        "intent": "order",
                        "subject": subject,
                        "requester": {"reference": f"urn:uuid:{care['doc']}"},
                    },
                    {
                        "resourceType": "Coverage",
                        "id": "coverage",
                        "status": "active",
                        "type": {"text": "Humana"},
                        "beneficiary": subject,
                        "payor": [{"display": "Humana"}],
                        "member_id": self.secret(
                            "insurance_id", "member_id", member, f"ExplanationOfBenefit/{eob}"
                        ),
                    },
                ],
                "identifier": [
                    {
                        "system": "https://bluebutton.cms.gov/resources/variables/clm_id",
                        "value": claim,
                    },
                    {
                        "system": "https://bluebutton.cms.gov/resources/identifier/claim-group",
                        "value": "99999999999",
                    },
                ],
                "status": "active",
                "type": self.concept(
                    "http://terminology.hl7.org/CodeSystem/claim-type",
                    "institutional",
                    "Institutional",
                    text=False,
                ),
                "use": "claim",
                "patient": subject,
                "billablePeriod": {"start": start, "end": end},
                "created": end,
                "insurer": {"display": "Humana"},
                "provider": {"reference": f"urn:uuid:{care['doc']}"},
                "referral": {"reference": "#referral"},
                "facility": facility,
                "claim": {"reference": f"urn:uuid:{claim}"},
                "outcome": "complete",
                "insurance": [
                    {"focal": True, "coverage": {"reference": "#coverage", "display": "Humana"}}
                ],
                "item": [
                    {
                        **item,
                        "servicedPeriod": {"start": start, "end": end},
                        "locationCodeableConcept": self.concept(
                            "http://terminology.hl7.org/CodeSystem/ex-serviceplace",
                            "21",
                            "Inpatient Hospital",
                            text=False,
                        ),
                        "adjudication": adjudication,
                    }
                    for item in items
                ],
                "total": [
                    {
                        "category": self.concept(
                            "http://terminology.hl7.org/CodeSystem/adjudication",
                            "submitted",
                            "Submitted Amount",
                        ),
                        "amount": {"value": price, "currency": "USD"},
                    }
                ],
                "payment": {"amount": {"value": 0.0, "currency": "USD"}},
            }
        )
        return [
            encounter,
            condition,
            *self.vitals(pid, enc, start, first),
            medication,
            claim_entry,
            eob_entry,
        ]


def _entry_bytes(entry: dict[str, Any]) -> int:
    """Bytes one entry adds to the bundle: its 2-space dump, 4 columns deeper, plus ",\n"."""
    text = dumps(entry)
    return len(text) + 4 * (text.count(b"\n") + 1) + 2


def bundle(
    *,
    seed: int = 0,
    target_bytes: int = DEFAULT_BYTES,
    encounters: int | None = None,
    patients: int = 1,
    phi: str = "token",
    encrypt: Encrypt | None = None,
    practice: str = PRACTICE,
    deterministic: frozenset[str] = frozenset({"ssn"}),
    bundle_type: str = "transaction",
) -> tuple[bytes, dict[str, Any]]:
    """A pretty-printed Synthea-shaped R4 Bundle and the facts about it.

    Encounter blocks (round-robin over `patients`, ~35 KB each) are added while that brings
    the size nearer `target_bytes` (at least one), or exactly `encounters` of them when given.
    `phi`: "token" (every PHI value a phi1 token from `encrypt`, e.g. `Keyring.encrypt`),
    "plain" (legacy plaintext; no `encrypt` needed) or "mixed" (alternating, tokens first).
    Classes in `deterministic` are encrypted with AES-SIV, as the example config does for ssn.
    Everything but the ciphertext is a function of the arguments: with phi="plain" the bytes
    are identical for identical arguments.
    """
    if bundle_type not in {"transaction", "collection"}:
        raise ValueError(f"bundle_type must be 'transaction' or 'collection', not {bundle_type!r}")
    if patients < 1:
        raise ValueError("patients must be at least 1")
    rng = random.Random(seed)
    build = _Builder(
        rng,
        phi=phi,
        encrypt=encrypt,
        practice=practice,
        deterministic=deterministic,
        transaction=bundle_type == "transaction",
    )
    people = [build.patient() for _ in range(patients)]
    org_entries, care = build.organization()
    head: list[dict[str, Any]] = [*people, *org_entries]
    size = len(dumps({"resourceType": "Bundle", "type": bundle_type, "entry": []}))
    size += sum(_entry_bytes(e) for e in head)
    blocks: list[dict[str, Any]] = []
    count = 0
    while (encounters is None and size < target_bytes) or count < (encounters or 1):
        kept = (len(build.phi_values), build.spellings.copy())
        new = build.block(people[count % patients], care, first=count == 0)
        grown = size + sum(_entry_bytes(e) for e in new)
        if encounters is None and count and grown - target_bytes > target_bytes - size:
            build.phi_values[kept[0] :], build.spellings = [], kept[1]
            break  # the bundle without this block is nearer the target
        size = grown
        blocks.extend(new)
        count += 1
    doc = {"resourceType": "Bundle", "type": bundle_type, "entry": [*head, *blocks]}
    body = dumps(doc)
    kinds = Counter(e["resource"]["resourceType"] for e in doc["entry"])
    forms: dict[str, Counter[str]] = {"token": Counter(), "plaintext": Counter()}
    for value in build.phi_values:
        forms[value["form"]][value["class"]] += 1
    facts = {
        "seed": seed,
        "bundle_type": bundle_type,
        "phi": phi,
        "practice": practice,
        "bytes": len(body),
        "content_type": CONTENT_TYPE,
        "encounters": count,
        "patients": patients,
        "resources": dict(sorted(kinds.items())),
        "tokens": dict(sorted(forms["token"].items())),
        "plaintext": dict(sorted(forms["plaintext"].items())),
        "phi_values": build.phi_values,
        "decimal_spellings": {s: build.spellings[s] for s in DECIMAL_SPELLINGS},
        "ssn_system": SSN_SYSTEM,
    }
    return body, facts


def example_fields() -> dict[str, Any]:
    """The `fields:` section of config/proxy.example.yaml: its classes and selectors."""
    fields: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())["fields"]
    return fields


def proxy_config(base: dict[str, Any]) -> dict[str, Any]:
    """The bench's phi-proxy config with the example config's field policy instead of its own."""
    return {**base, "fields": example_fields()}


def public_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """Facts without the PHI values themselves (for results files and reports)."""
    return {k: v for k, v in facts.items() if k != "phi_values"}


def main() -> None:
    target = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_BYTES
    _, facts = bundle(target_bytes=target, phi="plain")
    print(json.dumps(public_facts(facts), indent=1))


if __name__ == "__main__":
    main()

"""Build a benchmark world in one folder: keys, JWKS, grants, phi-proxy configs, portal pages.

Pages are static files served by nginx (the "portal"), so the portal itself costs almost no CPU
and the numbers measure the proxies. Every record carries an SSN, an insurance member id and a
~200-character medical history as ciphertext tokens, plus non-PHI fields. "cold" pages are a
pool of distinct pages (every value unique) larger than the decrypted-value cache, cycled by
wrk, so no value is ever served from the cache.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fhir
import yaml

from keys.kek import generate_kek_file
from keys.keyring import DEFAULT_CACHE_ENTRIES
from keys.settings import keystore_file
from proxy.grants import GrantRequest, SQLiteGrantStore
from proxy.identity import DemoIssuer, Subject
from proxy.settings import load_settings

SIZES = (0, 1, 20, 100, 1000)
PRACTICE = "practice-a"
AUDIENCE = "phi-proxy-bench"
ISSUER = "https://idp.bench.invalid"
GRANTED = "dr-granted"
UNGRANTED = "clerk-no-grant"
_WORDS = (
    "hypertension",
    "diabetes",
    "asthma",
    "allergy",
    "penicillin",
    "fracture",
    "appendectomy",
    "migraine",
    "insulin",
    "follow-up",
    "cardiology",
    "referral",
    "mri",
    "normal",
    "elevated",
    "chronic",
    "acute",
    "stable",
    "prescribed",
    "metformin",
    "lisinopril",
    "physiotherapy",
    "smoker",
    "none",
    "family",
    "history",
    "of",
    "stroke",
)


def proxy_config(upstream: str, port: int) -> dict:
    """The phi-proxy config the bench runs (keys selectors only, as in the black-box suite)."""
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": {"url": upstream, "timeout": 30, "connect_timeout": 5, "max_connections": 64},
        "admin": {"port": 0},
        "logging": {"level": "info"},
        "limits": {"max_request_body": 1 << 20, "max_response_body": 16 << 20},
        "identity": {"issuers": [ISSUER], "audience": AUDIENCE, "jwks_file": "./jwks.json"},
        "grants": {"store": "./grants.sqlite3", "max_ttl": "90d"},
        "keys": {"keystore": "./keystore.json", "kek": {"provider": "file", "path": "./kek.b64"}},
        "fields": {
            "classes": {
                "ssn": {
                    "mask": {"keep_last": 4, "template": "***-**-{last}"},
                    "deterministic": True,
                },
                "insurance_id": {"mask": {"text": "[redacted]"}},
                "history": {"mask": None},
            },
            "selectors": [
                {"class": "ssn", "keys": ["ssn"]},
                {"class": "insurance_id", "keys": ["insurance_id", "member_id"]},
                {"class": "history", "keys": ["medical_history", "history"]},
            ],
            "record": {"practice_keys": ["practice_id"], "id_keys": ["patient_id", "id"]},
        },
        "write_routes": [
            {
                "method": "POST",
                "path": "/api/bookings",
                "practice_from": {"body_key": "practice_id"},
            }
        ],
    }


def history(rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < 200:
        words.append(rng.choice(_WORDS))
    return " ".join(words)[:200]


def record(rng: random.Random, index: int, encrypt: object | None) -> dict:
    record: dict[str, object] = {
        "id": f"p{index:07d}",
        "practice_id": PRACTICE,
        "name": f"Patient {index}",
        "dob": f"19{rng.randrange(30, 99)}-0{rng.randrange(1, 9)}-1{rng.randrange(0, 9)}",
        "appointments": rng.randrange(0, 40),
        "active": True,
    }
    if encrypt is not None:
        ssn = f"{rng.randrange(100, 899)}-{rng.randrange(10, 99)}-{rng.randrange(1000, 9999)}"
        record["ssn"] = encrypt(PRACTICE, "ssn", ssn, deterministic=True)  # type: ignore[operator]
        member = f"INS-{rng.randrange(10**9, 10**10)}"
        record["insurance_id"] = encrypt(PRACTICE, "insurance_id", member)  # type: ignore[operator]
        record["history"] = encrypt(PRACTICE, "history", history(rng))  # type: ignore[operator]
    return record


def page(rng: random.Random, count: int, start: int, encrypt: object | None) -> bytes:
    records = [record(rng, start + i, encrypt) for i in range(count)]
    return json.dumps({"count": count, "patients": records}, separators=(",", ":")).encode()


def cold_pool(count: int) -> int:
    """Distinct pages cycled for `count` records: 2.5x the cache's entries (always misses)."""
    if count == 0:
        return 1
    return max(4, -(-int(2.5 * DEFAULT_CACHE_ENTRIES) // (3 * count)))


async def _grant(path: Path, max_ttl: timedelta, now: datetime) -> None:
    grants = SQLiteGrantStore(path, max_ttl=max_ttl)
    try:
        await grants.add(
            GrantRequest(
                subject=Subject(ISSUER, GRANTED),
                practice=PRACTICE,
                field_classes=None,
                expires_at=now + timedelta(days=2),
                created_by="bench",
                reason="benchmark caller with a grant",
            ),
            now=now,
        )
    finally:
        await grants.close()


def build(folder: Path, www_root: Path, *, portal_url: str) -> dict:
    """Write everything into `folder`; returns facts the runner needs (tokens, paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    generate_kek_file(folder / "kek.b64")
    issuer = DemoIssuer(issuer=ISSUER, audience=AUDIENCE)
    issuer.write_jwks(folder / "jwks.json")
    config_path = folder / "phi-proxy.yaml"
    config_path.write_text(yaml.safe_dump(proxy_config(portal_url, 0), sort_keys=False))
    settings = load_settings(config_path)
    store = keystore_file(settings.keys)
    store.create()
    store.add_practices([PRACTICE, "practice-b"])
    keyring = store.load()
    now = datetime.now(UTC)
    asyncio.run(_grant(settings.grants.sqlite_path, settings.grants.max_ttl, now))
    www = www_root / "api"
    rng = random.Random(8)
    serial = 0
    for count in SIZES:
        for kind, encrypt in (("patients", keyring.encrypt), ("nophi", None)):
            (www / kind).mkdir(parents=True, exist_ok=True)
            (www / kind / str(count)).write_bytes(page(rng, count, serial, encrypt))
            serial += count
        cold = www / "cold" / str(count)
        cold.mkdir(parents=True, exist_ok=True)
        for index in range(cold_pool(count)):
            cold.joinpath(str(index)).write_bytes(page(rng, count, serial, keyring.encrypt))
            serial += count
    booking = {
        "practice_id": PRACTICE,
        "slot": "2026-12-01T09:30:00Z",
        "patient": {
            "name": "Patient Booking",
            "ssn": "123-45-6789",
            "insurance_id": "INS-1234567890",
            "history": history(rng),
        },
    }
    (folder / "booking.json").write_text(json.dumps(booking))
    ttl = 6 * 3600
    tokens = {
        "granted": issuer.mint(GRANTED, now=now.timestamp(), ttl=ttl),
        "ungranted": issuer.mint(UNGRANTED, now=now.timestamp(), ttl=ttl),
    }
    sizes = {str(c): (www / "patients" / str(c)).stat().st_size for c in SIZES}  # bytes per page
    return {
        "config_base": proxy_config(portal_url, 0),
        "tokens": tokens,
        "cold_pool": {str(c): cold_pool(c) for c in SIZES},
        "page_bytes": sizes,
    }


def build_fhir(folder: Path, www_root: Path, *, target_bytes: int = fhir.DEFAULT_BYTES) -> dict:
    """After `build`: the FHIR bundle (tokens of this folder's keystore) at fhir.PATH.

    Returns the bundle's facts without the PHI values.
    """
    settings = load_settings(folder / "phi-proxy.yaml")
    keyring = keystore_file(settings.keys).load()
    body, facts = fhir.bundle(
        seed=fhir.BENCH_SEED, target_bytes=target_bytes, encrypt=keyring.encrypt
    )
    page = www_root / fhir.PATH.lstrip("/")
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_bytes(body)
    return fhir.public_facts(facts)


if __name__ == "__main__":  # manual use: dataset.py FOLDER WWW PORTAL_URL
    facts = build(Path(sys.argv[1]), Path(sys.argv[2]), portal_url=sys.argv[3])
    print(json.dumps(facts, indent=1))

"""Timing of phi_proxy_core.transform_json against the Python walk.

Run: `.venv/bin/python bench/native_core.py` (after building core/ into the venv).

Run from the repository root with the worktree's venv; it imports the test module's reference
glue (tests/native/test_native_parity.py) for the policy/keys/facts conversion.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "native"))

import test_native_parity as t

from proxy.transform import FieldPolicy, RevealContext, TransformStats
from proxy.transform.jsonsafe import parse_json
from proxy.transform.response import _walk_document
from proxy.transform.settings import FieldSettings

native = t.native


def best(fn, repeat: int = 7, number: int = 20) -> float:
    """Best mean seconds per call over `repeat` rounds of `number` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return min(times)


def run_native(policy, keys, body, access, route=None):
    facts = t.facts_for(t.KEYRING, access)
    return lambda: native.transform_json(body, policy, keys, route, facts, access.allows)


def run_python(policy, body, access, route=None):
    def go():
        ctx = RevealContext(policy, t.KEYRING, access, route, TransformStats())
        return _walk_document(parse_json(body), body, ctx)

    return go


def main() -> None:
    policy = t.POLICIES["main"]
    npolicy = t.NATIVE_POLICIES["main"]
    granted, nobody = t.GRANT_ALL, t.NOBODY

    page = t._bench_page(100)  # noqa: SLF001 - the test module's page builder
    values = 300
    if run_native(npolicy, t.KEYS, page, granted)() is None:
        raise SystemExit("native gave up on the bench page")
    warm = best(run_native(npolicy, t.KEYS, page, granted))
    warm_masked = best(run_native(npolicy, t.KEYS, page, nobody))
    py_warm = best(run_python(policy, page, granted), number=5)
    print(f"bench page 100 records ({len(page)} B, {values} tokens), warm cache:")
    print(f"  native granted  {warm * 1e6:8.1f} us  = {warm / values * 1e6:.3f} us/value")
    per_value = warm_masked / values * 1e6
    print(f"  native no grant {warm_masked * 1e6:8.1f} us  = {per_value:.3f} us/value")
    print(f"  python granted  {py_warm * 1e6:8.1f} us  = {py_warm / values * 1e6:.3f} us/value")

    def cold() -> None:
        keys = t.native_keys()  # empty opened-token cache: every token decrypted
        native.transform_json(
            page, npolicy, keys, None, t.facts_for(t.KEYRING, granted), granted.allows
        )

    # Marginal cost per PHI value: the same page with every token replaced by plain text of
    # the same length under the same (selected) keys' unselected twins.
    doc = orjson.loads(page)
    for record in doc["patients"]:
        for key in ("ssn", "insurance_id", "history"):
            record["x_" + key] = "p" * len(record.pop(key))
    plain = orjson.dumps(doc)
    base = best(run_native(npolicy, t.KEYS, plain, granted))
    print(
        f"  same page without tokens {base * 1e6:8.1f} us -> marginal "
        f"{(warm - base) / values * 1e6:.3f} us/value warm granted, "
        f"{(warm_masked - base) / values * 1e6:.3f} us/value warm no grant"
    )
    calib = best(lambda: orjson.loads(page))
    print(f"  (machine calibration: orjson.loads of this page {calib * 1e6:.1f} us)")

    keys_only = best(t.native_keys)
    cold_time = best(cold) - keys_only
    print(
        f"  native cold     {cold_time * 1e6:8.1f} us  = {cold_time / values * 1e6:.3f} us/value"
        f" (marginal {(cold_time - base) / values * 1e6:.3f} us/value)"
    )

    nophi = orjson.dumps(
        {
            "items": [
                {
                    "name": f"item {i}",
                    "price": i * 1.25,
                    "tags": ["a", "b", "c"],
                    "active": True,
                    "description": "plain text without anything secret " * 2,
                    "id": i,
                }
                for i in range(310)
            ]
        }
    )
    nophi = nophi[: 64 * 1024] if len(nophi) <= 64 * 1024 else nophi
    result = run_native(npolicy, t.KEYS, nophi, nobody)()
    if result is None or result[0] is not None:
        raise SystemExit("native changed or gave up on the no-PHI body")
    n = best(run_native(npolicy, t.KEYS, nophi, nobody), number=200)
    p = best(run_python(policy, nophi, nobody), number=20)
    c = best(lambda: orjson.loads(nophi), number=200)
    print(
        f"no-PHI body {len(nophi)} B: native {n * 1e6:.1f} us, python {p * 1e6:.1f} us, "
        f"orjson.loads alone {c * 1e6:.1f} us"
    )

    fhir_fields = {
        "classes": {
            "ssn": {"mask": {"keep_last": 4, "template": "***-**-{last}"}},
            "mrn": {"mask": {"text": "[mrn]"}},
            "phone": {"mask": None},
            "history": {"mask": None},
        },
        "selectors": [
            {"class": "ssn", "path": "$..[?(@.system=='http://hl7.org/fhir/sid/us-ssn')].value"},
            {"class": "mrn", "path": "$..identifier[?(@.system=='urn:mrn')].value"},
            {"class": "phone", "path": "$..telecom[?(@.system=='phone')].value"},
            {"class": "history", "path": "$.entry[*].resource.note[?(@.text)].text"},
        ],
        "record": {"practice_keys": ["practice_id"], "id_keys": ["id"]},
    }
    fpolicy = FieldPolicy.compile(FieldSettings.model_validate(fhir_fields))
    fnative = t.native_policy(fpolicy)
    bundle = t._fhir_bundle(560)  # noqa: SLF001 - the test module's bundle builder
    r = run_native(fnative, t.KEYS, bundle, granted, "A")()
    if r is None:
        raise SystemExit("native gave up on the FHIR bundle")
    fn = best(run_native(fnative, t.KEYS, bundle, granted, "A"), number=10)
    fm = best(run_native(fnative, t.KEYS, bundle, nobody, "A"), number=10)
    fp = best(run_python(fpolicy, bundle, granted, "A"), number=3)
    print(f"FHIR bundle {len(bundle)} B, 4 path selectors ({len(r[1])} events):")
    print(
        f"  native granted {fn * 1e3:.3f} ms, no grant {fm * 1e3:.3f} ms, python {fp * 1e3:.3f} ms"
    )


if __name__ == "__main__":
    main()

"""Micro-benchmark of the per-value path: token parse + decrypt + mask, in µs per PHI value.

* keyring.open_fast, cold: every token unique and the pool 2.5x the cache (all misses);
* keyring.open_fast, cached: the same tokens again;
* whole JSON transform of a 100-record page (parse, walk, decide, serialize), decrypt and mask,
  cold and warm, per value; and the *added* cost per value (PHI page minus the same page
  without PHI fields, divided by the values);
* the audit event of such a page (100 records x 3 classes disclosed), built and sealed;
* counting one such request in the Prometheus metrics (the request, its two latencies and the
  page's values), with the values in memory (one process) and in files (`--workers N`);
* the floor: orjson parse + serialize of the page and the bare library calls per value
  (base64url decode, AES-256-GCM open), i.e. what even a compiled walker would still pay;
* the cold start per KEK provider (`kek_cold.py`): a new process loading a keystore of 100
  practices x 3 versions with a file KEK, a SoftHSM2 token and moto's KMS server.

`run_fhir` (reported in its own section): CPU time of `transform_response` on the ≈500 KB
Synthea-shaped FHIR bundle (`fhir.py`, the example config's field policy) for a grantee and a
non-grantee, plus the orjson floor for that bundle and whether its decimal spellings survive.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from collections import Counter
from typing import TYPE_CHECKING

import dataset
import fhir
import kek_cold

if TYPE_CHECKING:
    from collections.abc import Callable

    from keys.keyring import Keyring
import orjson

from keys.keyring import DEFAULT_CACHE_ENTRIES
from keys.testing import make_keyring
from keys.token_format import TOKEN_PATTERN_BYTES
from proxy import metrics
from proxy.accesslog import AccessRecord
from proxy.audit.chain import Chain, Head
from proxy.audit.requests import AuditState, RequestAuditor
from proxy.audit.secrets import ChainKey
from proxy.audit.settings import AlertSettings
from proxy.grants import Access, PracticeAccess
from proxy.identity import Subject
from proxy.transform import (
    FieldPolicy,
    FieldSettings,
    RevealContext,
    TransformStats,
    transform_response,
)
from proxy.transform.response import transform_json

PRACTICE = dataset.PRACTICE


def _best(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _access(*, granted: bool) -> Access:
    if not granted:
        return Access(Subject(dataset.ISSUER, "nobody"))
    scope = {PRACTICE: PracticeAccess(all_fields=True, field_classes=frozenset(), grant_ids=("g",))}
    return Access(Subject(dataset.ISSUER, "dr"), scope)


def _open_figures(keyring: Keyring, rng: random.Random) -> dict[str, float]:
    """keyring.open_fast alone: cold (cycling 2.5x the cache, every call misses) and cached."""
    pool = int(2.5 * DEFAULT_CACHE_ENTRIES)
    tokens = [keyring.encrypt(PRACTICE, "history", dataset.history(rng)) for _ in range(pool)]
    hot = tokens[:1000]
    opener = keyring.open_fast

    def open_all(batch: list[str]) -> None:
        for token in batch:
            opener(token)

    open_all(hot)
    return {
        "open_cold_us": 1e6 * _best(lambda: open_all(tokens), 3) / len(tokens),
        "open_cached_us": 1e6 * _best(lambda: open_all(hot)) / len(hot),
    }


def _transform_figures(keyring: Keyring, rng: random.Random) -> dict[str, float]:
    """The whole JSON transform of a 100-record page (300 PHI values), per page and per value."""
    policy = FieldPolicy.compile(
        FieldSettings.model_validate(dataset.proxy_config("http://x", 0)["fields"])
    )
    pages = [dataset.page(rng, 100, i * 100, keyring.encrypt) for i in range(60)]
    plain = dataset.page(rng, 100, 0, None)
    values = 300
    out: dict[str, float] = {}

    def many(bodies: list[bytes], access: Access) -> None:
        for body in bodies:
            transform_json(body, RevealContext(policy, keyring, access))

    for who, access in (("decrypt", _access(granted=True)), ("mask", _access(granted=False))):
        warm = [pages[0]] * 50
        many(warm, access)
        # 60 pages x 300 values cycle through a 16k-entry FIFO cache: every value misses.
        cold_t = _best(lambda access=access: many(pages, access), 3) / len(pages)
        warm_t = _best(lambda access=access, warm=warm: many(warm, access)) / len(warm)
        out[f"transform_{who}_cold_us_per_value"] = 1e6 * cold_t / values
        out[f"transform_{who}_warm_us_per_value"] = 1e6 * warm_t / values
        out[f"page100_{who}_cold_us"] = 1e6 * cold_t
        out[f"page100_{who}_warm_us"] = 1e6 * warm_t
    out["page100_nophi_transform_us"] = (
        1e6 * _best(lambda: many([plain] * 50, _access(granted=True))) / 50
    )
    out["page100_nophi_orjson_loads_us"] = (
        1e6 * _best(lambda: [orjson.loads(plain) for _ in range(50)]) / 50
    )
    for who in ("decrypt", "mask"):
        for temp in ("cold", "warm"):
            added = out[f"page100_{who}_{temp}_us"] - out["page100_nophi_transform_us"]
            out[f"added_{who}_{temp}_us_per_value"] = added / values
    return out


def _canary_figures(keyring: Keyring, rng: random.Random) -> dict[str, float]:
    """The canary search on a 100-record page, per page, with 0, 1 and 100 canaries registered.

    Worst case for the search: every canary is an SSN token of the page's own practice and key,
    so every SSN token on the page shares its first 40 bytes with each of them. Searched twice:
    a page holding none of them (the usual case) and one holding one (the same cost, by design).
    """
    from proxy.canaries import CanaryHit, CanaryScanner  # noqa: PLC0415 - only here

    page = dataset.page(rng, 100, 0, keyring.encrypt)
    out: dict[str, float] = {}
    for count in (0, 1, 100):
        tokens = {
            keyring.encrypt(PRACTICE, "ssn", f"9{i:02d}-00-{i:04d}", deterministic=True): (
                CanaryHit(f"c_{i:016x}", PRACTICE, "ssn", "k")
            )
            for i in range(count)
        }
        scanner = CanaryScanner(tokens)
        first_ssn = TOKEN_PATTERN_BYTES.search(page, page.index(b"phi1.d.")).group()
        holding = page.replace(first_ssn, next(iter(tokens)).encode(), 1) if tokens else page
        for name, body in (("absent", page), ("present", holding)):
            inner = 200
            seconds = _best_cpu(lambda body=body, scan=scanner: scan.find(body), inner=inner)
            out[f"canary_search_page100_{count}_{name}_us"] = 1e6 * seconds
    return out


def _audit_figures() -> dict[str, float]:
    """One request's audit event at 100 records: payload build (event loop) and seal (writer)."""
    stats = TransformStats()
    for index in range(100):
        for field_class in ("ssn", "insurance_id", "history"):
            stats.decrypted[field_class] += 1
            stats.disclosed(PRACTICE, f"p{index:07d}", field_class)
    state = AuditState(response_stats=stats, access=_access(granted=True))
    record = AccessRecord("0123456789abcdef", "GET", "/api/patients/100", "127.0.0.1", 0.0, "s")
    auditor = RequestAuditor(None, AlertSettings())
    chain = Chain(ChainKey(bytes(32)), checkpoint_every=1000)
    payload = auditor._payload(record, state, 200, "forwarded")  # noqa: SLF001 - the hot path
    reps = 200
    build = _best(
        lambda: [auditor._payload(record, state, 200, "forwarded") for _ in range(reps)]  # noqa: SLF001
    )
    seal = _best(lambda: [chain.seal(payload, Head.empty()) for _ in range(reps)])
    return {
        "audit_event_page100_build_us": 1e6 * build / reps,
        "audit_event_page100_seal_us": 1e6 * seal / reps,
    }


_METRIC_REPS = 2000


def _metrics_figures(keyring: Keyring) -> dict[str, float]:
    """Counting one 100-record request in the metrics: in memory, and in `--workers` files."""
    policy = FieldPolicy.compile(
        FieldSettings.model_validate(dataset.proxy_config("http://x", 0)["fields"])
    )
    classes = list(policy.settings.classes)[:3]
    stats = TransformStats(decrypted=Counter(dict.fromkeys(classes, 100)), practices={PRACTICE})
    record = AccessRecord("0123456789abcdef", "GET", "/api/patients", "127.0.0.1", 0.0)
    record.status, record.upstream_ms = 200, 3.0
    out: dict[str, float] = {}
    folder = metrics.create_shared_folder()
    try:
        for mode, where in (("memory", None), ("files", folder)):
            counted = metrics.install(where)

            def one(counted: metrics.Metrics = counted) -> None:
                counted.request(record, 0.01)
                counted.transformed(stats, keyring, policy)

            took = _best(lambda one=one: [one() for _ in range(_METRIC_REPS)])
            out[f"metrics_request_page100_{mode}_us"] = 1e6 * took / _METRIC_REPS
    finally:
        metrics.install(None)
        metrics.remove_shared_folder(folder)
    return out


def _nophi_proof_figures(rng: random.Random) -> dict[str, float]:
    """The no-PHI proof (`FieldPolicy.may_need_transform`) on a 64 KB page without PHI."""
    policy = FieldPolicy.compile(
        FieldSettings.model_validate(dataset.proxy_config("http://x", 0)["fields"])
    )
    page = dataset.page(rng, 560, 0, None)[: 64 * 1024]  # a cut page: the proof reads bytes
    if policy.may_need_transform(page, "application/json"):
        raise RuntimeError("the no-PHI page needs the transform: the micro cell is broken")
    reps = 200
    took = _best(lambda: [policy.may_need_transform(page, "application/json") for _ in range(reps)])
    return {"nophi_proof_64kb_us": 1e6 * took / reps}


def _floor_figures(keyring: Keyring, rng: random.Random) -> dict[str, float]:
    """What no implementation avoids (a compiled walker included): the floor under the targets.

    One orjson parse + serialization of the 100-record page, and per PHI value the library
    calls alone: base64url decode and AES-256-GCM open of a history-sized value through
    cryptography, with no Python around them but the loop.
    """
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415

    page = dataset.page(rng, 100, 0, keyring.encrypt)
    doc = orjson.loads(page)
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce, aad = bytes(12), b"phi1.r.0123456789abcdef.history."
    sealed = [aead.encrypt(nonce, dataset.history(rng).encode(), aad) for _ in range(1000)]
    texts = [base64.urlsafe_b64encode(c).rstrip(b"=") + b"==" for c in sealed]
    reps = 200
    roundtrip = _best(lambda: [orjson.dumps(orjson.loads(page)) for _ in range(reps)]) / reps
    dumps = _best(lambda: [orjson.dumps(doc) for _ in range(reps)]) / reps
    b64 = _best(lambda: [base64.urlsafe_b64decode(t) for t in texts]) / len(texts)
    gcm = _best(lambda: [aead.decrypt(nonce, c, aad) for c in sealed]) / len(sealed)
    return {
        "floor_page100_orjson_loads_dumps_us": 1e6 * roundtrip,
        "floor_page100_orjson_dumps_us": 1e6 * dumps,
        "floor_b64decode_us_per_value": 1e6 * b64,
        "floor_aesgcm_open_us_per_value": 1e6 * gcm,
    }


def _best_cpu(fn: Callable[[], object], *, inner: int, repeat: int = 5) -> float:
    """Least CPU seconds (this process) per call of `fn` over `repeat` batches of `inner` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(inner):
            fn()
        best = min(best, (time.process_time() - start) / inner)
    return best


def _spellings_kept(body: bytes) -> int:
    """How many of the bundle's special decimal spellings are still spelled so in `body`."""
    return sum(
        len(re.findall(rb":\s*" + re.escape(s.encode()) + rb"(?=[,\s}\]])", body))
        for s in fhir.DECIMAL_SPELLINGS
    )


def run_fhir() -> dict:
    """The FHIR bundle through `transform_response` alone, per bundle, in CPU µs.

    warm: the same bundle again and again (decrypted values cached, as in the wrk cell that
    serves one bundle); cold: 8 bundles of fresh tokens, each transformed once (every token
    opened). The floor is one orjson parse + compact serialization of the bundle.
    """
    keyring = make_keyring([fhir.PRACTICE])
    body, facts = fhir.bundle(seed=fhir.BENCH_SEED, encrypt=keyring.encrypt)
    cold = [fhir.bundle(seed=fhir.BENCH_SEED + 1 + i, encrypt=keyring.encrypt)[0] for i in range(8)]
    policy = FieldPolicy.compile(FieldSettings.model_validate(fhir.example_fields()))
    kind = fhir.CONTENT_TYPE
    out: dict[str, float] = {
        "bundle_bytes": len(body),
        "phi_values": len(facts["phi_values"]),
        "decimal_spellings_in": _spellings_kept(body),
    }
    for who, access in (("grantee", _access(granted=True)), ("nongrantee", _access(granted=False))):

        def once(access: Access = access, data: bytes = body) -> bytes:
            return transform_response(data, kind, RevealContext(policy, keyring, access))

        result = once()
        out[f"{who}_out_bytes"] = len(result)
        out[f"{who}_decimal_spellings_kept"] = _spellings_kept(result)
        out[f"{who}_warm_cpu_us"] = 1e6 * _best_cpu(once, inner=10)
        start = time.process_time()
        for data in cold:
            once(data=data)
        out[f"{who}_cold_cpu_us"] = 1e6 * (time.process_time() - start) / len(cold)
    out["floor_orjson_loads_dumps_cpu_us"] = 1e6 * _best_cpu(
        lambda: orjson.dumps(orjson.loads(body)), inner=10
    )
    return {k: round(v, 1) for k, v in out.items()}


def run() -> dict:
    """All micro figures, in µs (per value unless named per page)."""
    rng = random.Random(8)
    keyring = make_keyring([PRACTICE])
    out = _open_figures(keyring, rng) | _transform_figures(keyring, rng) | _audit_figures()
    out |= _metrics_figures(keyring)
    out |= _nophi_proof_figures(rng)
    out |= _floor_figures(keyring, rng)
    out |= _canary_figures(keyring, rng)
    out |= kek_cold.run()
    return {k: round(v, 3) for k, v in out.items()}


if __name__ == "__main__":
    print(json.dumps(run() | {"fhir": run_fhir()}, indent=1))

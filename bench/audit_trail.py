"""A genuine audit trail of any size, written by the proxy's own payload and sealing code.

Events are built by `RequestAuditor._payload` from `TransformStats` as a request fills them in,
sealed by `Chain` (HMAC key, Ed25519-signed checkpoints every 1,000 events) and appended by
`FileSink` in flush-sized batches, rotated like logrotate does (rename, then the next batch
opens a new file with a `genesis` event). So `phi-audit` reads exactly what a proxy would have
written; only the clock is simulated (30 days of traffic) and fsync is off.

The mix is a hospital's day: 2,000 staff subjects across 4 practices and 200,000 patients;
55 % single-record reads, 22 % pages of 20, 5 % pages of 100, 13 % reads that were only masked
(no grant), 5 % writes. The trail is cached per (events, seed, GENERATOR_VERSION) under
`$TMPDIR/phi-bench-audit/`, since a million events take a minute or two to write.
"""

from __future__ import annotations

import base64
import os
import random
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.accesslog import AccessRecord
from proxy.audit.chain import Chain
from proxy.audit.events import iso_time
from proxy.audit.requests import AuditState, RequestAuditor
from proxy.audit.secrets import ChainKey
from proxy.audit.settings import AlertSettings
from proxy.audit.sink import FileSink
from proxy.grants import Access, PracticeAccess
from proxy.identity import Subject
from proxy.transform import TransformStats

#: Bump when the shape of the generated trail changes, so stale caches are not reused.
GENERATOR_VERSION: Final = 1
ISSUER: Final = "https://idp.hospital.example"
PRACTICES: Final = ("practice-a", "practice-b", "practice-c", "practice-d")
CLASSES: Final = ("ssn", "history", "insurance_id", "dob")
SUBJECTS: Final = 2000
PATIENTS: Final = 200_000
BATCH: Final = 400  # events per write: a busy replica's 200 ms flush
ROTATE_EVERY: Final = 250_000  # events per file (logrotate)


def cache_root() -> Path:
    """Where generated trails are kept between benchmark runs."""
    return Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "phi-bench-audit"


def subject_name(index: int) -> str:
    """The subject as the trail logs it (issuer|sub)."""
    return f"{ISSUER}|00u{index:05d}"


def _access(subject: str, practices: tuple[str, ...]) -> Access:
    scope = {
        p: PracticeAccess(
            all_fields=True, field_classes=frozenset(), grant_ids=(f"g_{abs(hash(p)) % 10**8:08d}",)
        )
        for p in practices
    }
    return Access(Subject(ISSUER, subject), scope)


class _Traffic:
    """One simulated request at a time: its AccessRecord and AuditState."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.accesses = [
            _access(
                f"00u{i:05d}",
                (PRACTICES[i % 4],) + ((PRACTICES[(i + 1) % 4],) if i % 7 == 0 else ()),
            )
            for i in range(SUBJECTS)
        ]
        self.count = 0

    def next(self) -> tuple[AccessRecord, AuditState, int, str]:
        rng = self.rng
        self.count += 1
        who = rng.randrange(SUBJECTS)
        access = self.accesses[who]
        practice = PRACTICES[who % 4]
        roll = rng.random()
        stats = TransformStats()
        method, path, status = "GET", "/api/patients/{id}", 200
        if roll < 0.55:
            self._disclose(stats, practice, 1, rng.sample(CLASSES, rng.randint(1, 3)))
        elif roll < 0.77:
            path = "/api/patients"
            self._disclose(stats, practice, 20, ["ssn", "history"])
        elif roll < 0.82:
            path = "/api/patients"
            self._disclose(stats, practice, 100, ["ssn", "insurance_id", "history"])
        elif roll < 0.95:
            other = PRACTICES[(who + 2) % 4]
            for field_class in rng.sample(CLASSES, 2):
                stats.masked[field_class] += rng.randint(1, 20)
            stats.practices.add(other)
        else:
            into = TransformStats()
            into.encrypted["ssn"] += 1
            into.encrypted["history"] += 1
            method, status = "POST", 201
            record = AccessRecord(f"{self.count:016x}", method, "/api/patients", "10.0.4.7", 0.0)
            record.subject = subject_name(who)
            return record, AuditState(request_stats=into, access=access), status, "forwarded"
        record = AccessRecord(f"{self.count:016x}", method, path, f"10.0.{who % 250}.7", 0.0)
        record.subject = subject_name(who)
        return record, AuditState(response_stats=stats, access=access), status, "forwarded"

    def _disclose(
        self, stats: TransformStats, practice: str, records: int, classes: list[str]
    ) -> None:
        first = self.rng.randrange(PATIENTS - records)
        for n in range(first, first + records):
            for field_class in classes:
                stats.decrypted[field_class] += 1
                stats.disclosed(practice, f"p-{n:06d}", field_class)


def _write_keys(folder: Path) -> tuple[ChainKey, Ed25519PrivateKey]:
    rng = random.Random(1)
    material = bytes(rng.randrange(256) for _ in range(32))
    key_file = folder / "audit.key"
    key_file.write_text(base64.b64encode(material).decode() + "\n")
    key_file.chmod(0o600)
    signer = Ed25519PrivateKey.from_private_bytes(bytes(rng.randrange(256) for _ in range(32)))
    pem = folder / "signing.pem"
    pem.write_bytes(
        signer.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pem.chmod(0o600)
    (folder / "public.pem").write_bytes(
        signer.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (folder / "config.yaml").write_text(
        "audit:\n  path: audit.jsonl\n  key_file: audit.key\n  signing_key_file: signing.pem\n"
        "  checkpoint_every: 1000\n"
    )
    return ChainKey(material), signer


def write_trail(folder: Path, events: int, *, seed: int = 15) -> None:
    """Write `events` request events (plus genesis and checkpoint lines) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    key, signer = _write_keys(folder)
    chain = Chain(key, signer=signer, checkpoint_every=1000)
    path = folder / "audit.jsonl"
    sink = FileSink(path, fsync=False)
    clock = [datetime(2026, 3, 1, tzinfo=UTC)]
    step = timedelta(days=30) / max(events, 1)
    auditor = RequestAuditor(None, AlertSettings(), clock=lambda: clock[0], replica="phi-0:41")
    traffic = _Traffic(seed)
    written, rotated = 0, 0
    while written < events:
        batch: list[dict[str, Any]] = []
        for _ in range(min(BATCH, events - written)):
            clock[0] += step
            record, state, status, outcome = traffic.next()
            batch.append(auditor._payload(record, state, status, outcome))  # noqa: SLF001
        sink.append(chain, batch, ts=iso_time(clock[0]), force_checkpoint=False)
        written += len(batch)
        if written // ROTATE_EVERY > rotated and written < events:
            rotated += 1
            path.rename(folder / f"audit.jsonl.{rotated}")


def cached_trail(events: int, *, seed: int = 15) -> Path:
    """The folder of a generated trail of `events` events (with config.yaml), made if needed."""
    folder = cache_root() / f"trail-{events}-s{seed}-g{GENERATOR_VERSION}"
    if (folder / "complete").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    work = folder.with_name(folder.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    write_trail(work, events, seed=seed)
    (work / "complete").write_text("ok\n")
    work.rename(folder)
    return folder

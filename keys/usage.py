"""How many values each key version has encrypted, counted in memory and persisted in batches.

AES-GCM with random 96-bit nonces is safe only for a bounded number of encryptions per key
(NIST SP 800-38D: at most 2^32), so every DEK version's encryptions are counted. Writing the
keystore on every request would be slow and would race with operators, so the proxy keeps the
counts in memory (`UsageCounter.record`, a dict increment) and merges them into the usage file
(`keys.usage_file`, by default `<keystore>.usage.json` beside the keystore) every N encryptions
or every few seconds, under `flock`, so several worker processes add up instead of overwriting
each other. A crash loses at most one batch of counts, which is why the default limit is 2^31,
half the real bound.

A usage file that cannot be written (a keystore on a read-only Secret mount, a full disk) never
stops encryption or a request: the counts stay in memory, one error line says what is wrong
and which setting fixes it, and the next successful save adds them all and says so.

The file holds key ids and counts only: nothing secret. Editing it can at worst hide a warning
or trigger an early rotation; the keystore's own integrity is not involved.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from keys._file_ops import exclusive_lock, write_atomic
from keys.errors import KeystoreError
from keys.keyring import Keyring
from keys.settings import keystore_file

if TYPE_CHECKING:
    from collections.abc import Callable

    from keys.settings import KeySettings

__all__ = [
    "USAGE_FORMAT",
    "WARN_FRACTION",
    "CountingKeyring",
    "UsageCounter",
    "open_counting_keyring",
    "read_usage",
    "unsaved_warning",
    "usage_counter",
    "usage_path",
]

USAGE_FORMAT: Final = "phi-proxy-key-usage"
#: `phi-keys list` warns once a version has used this fraction of `keys.usage_limit`.
WARN_FRACTION: Final = 0.8

_log = logging.getLogger("phi_proxy.keys")
# The proxy's log handler sits on the root logger; command-line tools print their own warning
# (`unsaved_warning`) instead of Python's bare last-resort line.
_log.addHandler(logging.NullHandler())

#: What an operator does about a usage file that cannot be written.
_FIX: Final = (
    "set keys.usage_file to a file on a writable, persistent volume, or make this one writable "
    '(docs/key-lifecycle.md, "Usage limits")'
)


def usage_path(settings: KeySettings) -> Path:
    """The usage file of these settings: keys.usage_file, else `<keystore>.usage.json` beside it.

    Every reader and writer of the counters goes through here, so they all agree on the file.
    """
    if settings.usage_file is not None:
        return settings.usage_file
    return settings.keystore.with_name(settings.keystore.name + ".usage.json")


def usage_counter(settings: KeySettings) -> UsageCounter:
    """A UsageCounter on the configured usage file, flushing every keys.usage_flush_every."""
    return UsageCounter(usage_path(settings), flush_every=settings.usage_flush_every)


def unsaved_warning(counter: UsageCounter) -> str | None:
    """For a command-line tool after its last flush: the warning to print, or None if saved."""
    if counter.problem is None or not counter.pending:
        return None
    n = counter.pending
    return (
        f"warning: {n} encryption{'s' if n != 1 else ''} of this run could not be added to the "
        f"usage counters ({counter.problem}), so `phi-keys list` and keys.usage_limit do not "
        f"see {'them' if n != 1 else 'it'}; {_FIX}"
    )


def read_usage(path: Path) -> dict[str, int]:
    """Counts per kid from a usage file; {} if it does not exist yet (KeystoreError if corrupt)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise KeystoreError(f"{path}: cannot read usage counters ({exc.strerror})") from None
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    counts = doc.get("counts") if isinstance(doc, dict) else None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != USAGE_FORMAT
        or not isinstance(counts, dict)
        or not all(isinstance(k, str) and type(v) is int and v >= 0 for k, v in counts.items())
    ):
        raise KeystoreError(
            f"{path}: not a phi-proxy usage file; move it aside (counts restart from zero, "
            "so check `phi-keys list` against your rotation schedule)"
        )
    return dict(counts)


class UsageCounter:
    """Per-kid encryption counts: `record` in memory, `flush` merges them into the usage file.

    `record` runs on the request path (a lock and a dict increment). `flush` does file I/O and
    is meant for a background thread; it never raises: on failure it keeps the counts pending,
    because a counter problem must not fail a request or lose counts. It logs the first failure
    of a run of failures (an error naming the file, the reason and keys.usage_file) and the
    first success after it, not every retry.
    `on_due` is called (from `record`) once `flush_every` encryptions are pending; after a
    failed flush, only once `flush_every` more are pending, so a broken file is not retried on
    every encryption.
    """

    def __init__(
        self,
        path: Path,
        *,
        flush_every: int = 1000,
        on_due: Callable[[], None] | None = None,
        lock_timeout: float = 5.0,
    ) -> None:
        self._path = Path(path)
        self._flush_every = flush_every
        self._on_due = on_due
        self._lock_timeout = lock_timeout
        self._pending: Counter[str] = Counter()
        self._pending_total = 0
        self._due_at = flush_every
        self._problem: str | None = None
        self._mutex = threading.Lock()
        self._flush_mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<UsageCounter {self._path} pending={self._pending_total}>"

    @property
    def path(self) -> Path:
        """The usage file."""
        return self._path

    @property
    def pending(self) -> int:
        """Encryptions counted but not yet written to the file."""
        return self._pending_total

    @property
    def problem(self) -> str | None:
        """Why the last flush failed (names the file), or None if it succeeded."""
        return self._problem

    def check(self) -> str | None:
        """Flush now and return `problem`: at start, this tells at once if the file is usable."""
        self.flush()
        return self._problem

    def set_on_due(self, on_due: Callable[[], None] | None) -> None:
        """Set the callback that asks for a flush (the reloader's wake-up)."""
        self._on_due = on_due

    def record(self, kid: str, count: int = 1) -> None:
        """Count `count` encryptions under `kid`."""
        with self._mutex:
            self._pending[kid] += count
            self._pending_total += count
            due = self._pending_total >= self._due_at
        if due and self._on_due is not None:
            self._on_due()

    def flush(self) -> dict[str, int] | None:
        """Add the pending counts to the file; returns the new totals, or None if it failed."""
        with self._flush_mutex:
            with self._mutex:
                batch, self._pending = self._pending, Counter()
                self._pending_total = 0
                self._due_at = self._flush_every
            try:
                totals = self._merge(batch)
            except (KeystoreError, OSError) as exc:
                with self._mutex:
                    self._pending.update(batch)
                    self._pending_total += batch.total()
                    self._due_at = self._pending_total + self._flush_every
                self._failed(exc)
                return None
            if self._problem is not None:
                self._problem = None
                _log.warning(
                    "key usage counters saved again",
                    extra={"fields": {"file": str(self._path), "encryptions": batch.total()}},
                )
            return totals

    def _merge(self, batch: Counter[str]) -> dict[str, int]:
        with exclusive_lock(
            self._path.with_name(self._path.name + ".lock"),
            timeout=self._lock_timeout,
            what=self._path,
        ):
            totals = Counter(read_usage(self._path))
            if batch:
                totals.update(batch)
                doc = {"format": USAGE_FORMAT, "version": 1, "counts": dict(sorted(totals.items()))}
                write_atomic(self._path, (json.dumps(doc, indent=1) + "\n").encode())
            return dict(totals)

    def _failed(self, exc: KeystoreError | OSError) -> None:
        before = self._problem
        if isinstance(exc, KeystoreError):
            self._problem = str(exc)  # already names the file and what is wrong
        else:
            self._problem = f"{self._path}: cannot write ({exc.strerror or type(exc).__name__})"
        if self._problem != before:  # once per problem, not once per retry
            _log.error(
                "key usage counters cannot be saved; encryption continues, counted in memory "
                "only until they can be",
                extra={
                    "fields": {
                        "file": str(self._path),
                        "error": self._problem,
                        "pending": self._pending_total,
                        "meanwhile": "phi-keys list, the keys.usage_limit warning and "
                        "keys.auto_rotate_after do not see these encryptions, and they are lost "
                        "if this process exits",
                        "fix": _FIX,
                    }
                },
            )


class CountingKeyring(Keyring):
    """A Keyring that reports each encryption to a UsageCounter (by the kid that encrypted)."""

    # No __slots__: instances get a __dict__, so the counter needs no __init__ override and
    # follows whatever constructor Keyring has.
    _usage: UsageCounter | None = None

    def count_into(self, usage: UsageCounter) -> CountingKeyring:
        """Attach the counter; call once, before the keyring is handed to requests."""
        self._usage = usage
        return self

    def encrypt(
        self, practice: str, field_class: str, plaintext: str, *, deterministic: bool = False
    ) -> str:
        """Keyring.encrypt, then count one use of the practice's primary key."""
        token = super().encrypt(practice, field_class, plaintext, deterministic=deterministic)
        if self._usage is not None:
            self._usage.record(self.primary(practice).kid)
        return token


def open_counting_keyring(settings: KeySettings, usage: UsageCounter) -> CountingKeyring:
    """Load the configured keystore into a CountingKeyring that reports to `usage`."""
    return keystore_file(settings).load_as(CountingKeyring).count_into(usage)

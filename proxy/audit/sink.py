"""Where sealed lines go: a JSON-lines file shared by every writer on the host, or stdout.

File sink, one batch at a time (all synchronous; the proxy calls it from a worker thread):

1. open and `flock` the head file `<path>.head` — it never moves, so it is the trail's lock;
2. open the audit file for append (creating it 0600); re-check after locking that the path
   still names the file we opened (a rotation between open and lock means: open again);
3. the head is the later of the head file and the audit file's last line (a crash between
   writing lines and updating the head file leaves the file ahead, never behind);
4. an empty audit file — new trail, or just rotated — first gets a `genesis` event whose `prev`
   is the previous file's last hash, so the chain runs on across the rotation;
5. write, fsync, update the head file, unlock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from proxy.audit.chain import Chain, Head, line_hash

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["AuditSink", "FileSink", "StdoutSink", "head_path", "read_head_file"]

_TAIL_BYTES = 1 << 16


def head_path(path: Path) -> Path:
    """The lock-and-head file that sits beside the audit file."""
    return path.with_name(path.name + ".head")


class AuditSink(Protocol):
    """Appends sealed events. Raises OSError when the events could not be written."""

    def append(
        self, chain: Chain, payloads: list[dict[str, Any]], *, ts: str, force_checkpoint: bool
    ) -> bool:
        """Seal and write `payloads` durably; return True if a checkpoint was written."""
        ...

    def probe(self) -> None:
        """Raise OSError if a write would fail now (called while idle)."""
        ...

    def describe(self) -> str:
        """A short name for logs and /readyz."""
        ...


def read_head_file(fd: int) -> Head | None:
    """The head stored in an open head file, or None if empty or unreadable."""
    raw = os.pread(fd, 4096, 0)
    try:
        data = orjson.loads(raw)
        return Head(int(data["seq"]), str(data["hash"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - _TAIL_BYTES)
    chunk = os.pread(fd, size - start, start).rstrip(b"\n")
    return chunk.rsplit(b"\n", 1)[-1] or None


def _tail_head(line: bytes | None) -> Head | None:
    if line is None:
        return None
    try:
        seq = orjson.loads(line)["seq"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return Head(seq, line_hash(line)) if isinstance(seq, int) else None


class FileSink:
    """A JSON-lines file plus its `.head` lock file; safe for many processes at once."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        """Write to `path` (its folder must exist)."""
        self.path = path
        self._fsync = fsync

    def __repr__(self) -> str:
        return f"FileSink({str(self.path)!r})"

    def describe(self) -> str:
        """The file's path."""
        return str(self.path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[int, int]]:
        head_fd = os.open(head_path(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(head_fd, fcntl.LOCK_EX)
            while True:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                if os.path.samestat(os.fstat(fd), self.path.stat()):
                    break
                os.close(fd)  # rotated between open and stat: open the new file
            try:
                yield head_fd, fd
            finally:
                os.close(fd)
        finally:
            os.close(head_fd)  # closing releases the flock

    def probe(self) -> None:
        """Open and lock both files, as a write would."""
        with self._locked():
            pass

    def append(
        self, chain: Chain, payloads: list[dict[str, Any]], *, ts: str, force_checkpoint: bool
    ) -> bool:
        """Seal `payloads` after the trail's head and append them (see the module docstring)."""
        with self._locked() as (head_fd, fd):
            stored = read_head_file(head_fd)
            read_fd = os.open(self.path, os.O_RDONLY)
            try:
                tail = _tail_head(_last_line(read_fd))
            finally:
                os.close(read_fd)
            candidates = [h for h in (stored, tail) if h is not None]
            head = max(candidates, key=lambda h: h.seq) if candidates else Head.empty()
            batch = list(payloads)
            if tail is None:
                batch.insert(0, self._genesis(head, ts))
            lines, new_head, checkpointed = chain.seal_all(
                batch, head, ts=ts, force_checkpoint=force_checkpoint
            )
            data = b"".join(line + b"\n" for line in lines)
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(f"short write to the audit file ({written} of {len(data)} bytes)")
            if self._fsync:
                os.fsync(fd)
            record = orjson.dumps({"seq": new_head.seq, "hash": new_head.hash})
            os.ftruncate(head_fd, 0)
            os.pwrite(head_fd, record, 0)
            return checkpointed

    def _genesis(self, head: Head, ts: str) -> dict[str, Any]:
        return {
            "type": "genesis",
            "ts": ts,
            "file": self.path.name,
            "continues": head.seq > 0,
            "previous_seq": head.seq,
        }


class StdoutSink:
    """JSON lines on standard output; the chain lives in this process (a shipper collects it)."""

    def __init__(self) -> None:
        """Start a new chain at a genesis event."""
        self._head = Head.empty()

    def __repr__(self) -> str:
        return "StdoutSink()"

    def describe(self) -> str:
        """`stdout`."""
        return "stdout"

    def probe(self) -> None:
        """Flush stdout (raises OSError if it is closed)."""
        sys.stdout.flush()

    def append(
        self, chain: Chain, payloads: list[dict[str, Any]], *, ts: str, force_checkpoint: bool
    ) -> bool:
        """Seal and print `payloads`."""
        batch = list(payloads)
        if self._head.seq == 0:
            batch.insert(
                0,
                {
                    "type": "genesis",
                    "ts": ts,
                    "file": "stdout",
                    "continues": False,
                    "previous_seq": 0,
                },
            )
        lines, head, checkpointed = chain.seal_all(
            batch, self._head, ts=ts, force_checkpoint=force_checkpoint
        )
        sys.stdout.buffer.write(b"".join(line + b"\n" for line in lines))
        sys.stdout.flush()
        self._head = head
        return checkpointed

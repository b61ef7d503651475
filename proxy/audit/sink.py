"""Where sealed lines go: a JSON-lines file shared by every writer on the host, or stdout.

File sink, one batch at a time (all synchronous; the proxy calls it from a worker thread):

1. open and `flock` the head file `<path>.head` — it never moves, so it is the trail's lock;
2. open the audit file for append (creating it 0600, never through a symlink); re-check after
   locking that the path still names the file we opened (a rotation between open and lock
   means: open again);
   a non-empty file whose last line is not an audit event is refused (`NotAnAuditTrail`) and
   nothing is written to it: `audit.path` naming the KEK, the keystore or any other file must
   not append JSON to it and make the keys unusable;
3. the head is the later of the head file and the audit file's last line (a crash between
   writing lines and updating the head file leaves the file ahead, never behind);
4. an empty audit file — new trail, or just rotated — first gets a `genesis` event whose `prev`
   is the previous file's last hash, so the chain runs on across the rotation;
5. write, fsync, update the head file, unlock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sys
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from proxy.audit.chain import Chain, Head, line_hash

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = [
    "AuditSink",
    "FileSink",
    "NotAnAuditTrail",
    "StdoutSink",
    "head_path",
    "read_head_file",
]

_TAIL_BYTES = 1 << 16
#: The longest last line read back (an event naming ~a million records); longer is refused.
_MAX_LINE = 64 << 20
#: Fields every sealed line carries (proxy.audit.chain), besides the integer `seq`.
_CHAIN_FIELDS = ("prev", "mac", "type")


class NotAnAuditTrail(OSError):
    """`audit.path` names a file that is not an audit trail (or a symlink); nothing was written.

    An OSError, like every other sink failure, so the proxy's failure policy and the CLIs'
    "the change was made but could not be audited" message treat it the same way; the text is
    also its `strerror`, which is what those messages show.
    """

    def __init__(self, message: str) -> None:
        """Carry `message` as both the text and the `strerror`."""
        super().__init__(message)
        self.strerror = message


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

    def advice(self) -> str:
        """What to check when this sink cannot be written at start-up."""
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
    """The file's last non-empty line (without its newline), or None when there is none.

    Read backwards in blocks, so a long line (a request event naming thousands of records) is
    read whole; past `_MAX_LINE` bytes only its end is returned, which no parser accepts.
    """
    pos = os.fstat(fd).st_size
    parts: list[bytes] = []
    size = 0
    while pos > 0 and size < _MAX_LINE:
        start = max(0, pos - _TAIL_BYTES)
        chunk = os.pread(fd, pos - start, start)
        pos = start
        if not parts:
            chunk = chunk.rstrip(b"\n")  # the newline(s) ending the file
            if not chunk:
                continue
        cut = chunk.rfind(b"\n")
        parts.append(chunk[cut + 1 :])
        size += len(parts[-1])
        if cut >= 0:
            break
    return b"".join(reversed(parts)) or None


def _tail_head(line: bytes | None) -> Head | None:
    """The head a sealed last line gives; None if `line` is None or not an audit event."""
    if line is None:
        return None
    try:
        event = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    seq = event.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        return None
    if not all(isinstance(event.get(name), str) for name in _CHAIN_FIELDS):
        return None
    return Head(seq, line_hash(line))


def _not_a_trail(path: Path, why: str) -> NotAnAuditTrail:
    return NotAnAuditTrail(
        f"{path} is not a phi-proxy audit trail ({why}); nothing was written to it. Check "
        "audit.path: it must name the trail's own file, never the KEK, the keystore, the grant "
        "database or another file. If it is the trail and its last line was cut short by a "
        "crash, run `phi-audit verify`, then move the file aside (a new file continues the "
        "chain)"
    )


def _write_whole(fd: int, data: bytes, *, fsync: bool) -> None:
    """Append `data` and fsync it, or leave the file as it was and raise OSError.

    A short write (disk full) would otherwise leave half a line at the end, and a trail whose
    last line is not an event is refused from then on: one full disk would stop the trail (and,
    under `on_failure: deny`, every disclosure) until an operator stepped in. The events stay
    queued and are written again once there is room.
    """
    before = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
        if fsync and written == len(data):
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):  # the original error is the one to report
            os.ftruncate(fd, before)
        raise
    if written != len(data):
        with contextlib.suppress(OSError):
            os.ftruncate(fd, before)
        raise OSError(f"short write to the audit file ({written} of {len(data)} bytes)")


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

    def advice(self) -> str:
        """Where a file sink usually fails."""
        return "check that the folder exists and is writable by this user"

    def _open(self, path: Path, flags: int) -> int:
        """Open `path` (never through a symlink: a link could lead the appends anywhere)."""
        try:
            return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _not_a_trail(
                    path, "it is a symbolic link, which the audit sink never follows"
                ) from None
            raise

    @contextlib.contextmanager
    def _locked(self) -> Iterator[tuple[int, int, Head | None]]:
        """Lock the trail; yield the head fd, the audit fd and the head its last line gives.

        Raises NotAnAuditTrail, before anything is written, when the file holds data whose
        last line is not an audit event.
        """
        head_fd = self._open(head_path(self.path), os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(head_fd, fcntl.LOCK_EX)
            while True:
                fd = self._open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
                if os.path.samestat(os.fstat(fd), self.path.stat()):
                    break
                os.close(fd)  # rotated between open and stat: open the new file
            try:
                last = _last_line(fd)
                tail = _tail_head(last)
                if tail is None and os.fstat(fd).st_size:
                    raise _not_a_trail(self.path, "its last line is not an audit event")
                yield head_fd, fd, tail
            finally:
                os.close(fd)
        finally:
            os.close(head_fd)  # closing releases the flock

    def probe(self) -> None:
        """Open and lock both files and check the trail's last line, as a write would."""
        with self._locked():
            pass

    def append(
        self, chain: Chain, payloads: list[dict[str, Any]], *, ts: str, force_checkpoint: bool
    ) -> bool:
        """Seal `payloads` after the trail's head and append them (see the module docstring)."""
        with self._locked() as (head_fd, fd, tail):
            stored = read_head_file(head_fd)
            candidates = [h for h in (stored, tail) if h is not None]
            head = max(candidates, key=lambda h: h.seq) if candidates else Head.empty()
            batch = list(payloads)
            if tail is None:
                batch.insert(0, self._genesis(head, ts))
            lines, new_head, checkpointed = chain.seal_all(
                batch, head, ts=ts, force_checkpoint=force_checkpoint
            )
            data = b"".join(line + b"\n" for line in lines)
            _write_whole(fd, data, fsync=self._fsync)
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

    def advice(self) -> str:
        """Where a stdout sink usually fails."""
        return "check that standard output is open (the log shipper reading it is running)"

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

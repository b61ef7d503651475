"""Crash-safe file replacement and a cross-process lock, for files that must never be half-written.

`write_atomic` follows the only sequence POSIX makes durable: write a temp file in the same
folder, fsync it, rename it over the target, then fsync the folder so the rename itself survives
a power cut. Readers therefore see the old file or the new one, never a mix. `exclusive_lock`
serializes writers across processes with `flock` on a sidecar lock file (the target itself is
replaced on every write, so it cannot carry the lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from typing import TYPE_CHECKING

from keys.errors import KeystoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import BinaryIO

__all__ = ["atomic_writer", "exclusive_lock", "write_atomic"]


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    replace: Callable[[Path, Path], None] = os.replace,
) -> None:
    """Replace `path` with `data` atomically and durably; raises OSError, leaving `path` as it was.

    `replace` is a seam for tests that simulate a crash between the temp write and the rename.
    """
    tmp, fd = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _create_temp(path: Path, mode: int) -> tuple[Path, int]:
    """A new, unguessable temp file beside `path`: never an existing file or a symlink's target."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    return tmp, fd


@contextlib.contextmanager
def atomic_writer(path: Path, *, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Stream into a private temp file beside `path`; on success it replaces `path` durably.

    For output too large to hold in memory (`write_atomic` takes bytes). On any exception the
    temp file is removed and `path` is left as it was. Raises OSError like `write_atomic`.
    """
    tmp, fd = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def exclusive_lock(lock_path: Path, *, timeout: float, what: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `lock_path` (created 0600) for the `with` block.

    Waits up to `timeout` seconds, then raises KeystoreError naming `what`: another phi-keys
    process is mid-change, and waiting forever would hang an operator's terminal silently.
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise KeystoreError(f"{what}: cannot open lock file {lock_path} ({exc.strerror})") from None
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise KeystoreError(
                        f"{what}: another process has held the keystore lock for {timeout:.0f}s; "
                        "wait for it to finish (another phi-keys command?) and retry"
                    ) from None
                time.sleep(0.02)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a new or renamed entry in `folder` survive a power cut (fsync the folder itself)."""
    _fsync_dir(folder)

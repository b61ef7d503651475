"""Reading a small secret from a file only its owner may use: a KEK file, an HSM PIN file.

A secret anyone on the host can read protects nothing, so a file that group or others may read
or write is refused, with the `chmod` that fixes it. The file is opened without following a
final symlink and its mode is checked on the opened descriptor, not on whatever the name points
to a moment later. Errors are KekError and never quote the file's content.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from keys.errors import KekError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["read_private_file"]


def read_private_file(path: Path, *, what: str, missing_hint: str, limit: int = 4096) -> bytes:
    """At most `limit` bytes of an owner-only regular file (mode 0600 or 0400), else KekError.

    `what` names the file in messages ("KEK file", "PIN file"); `missing_hint` says how to fix
    a missing one.
    """
    source = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise KekError(f"{source}: {what} not found; {missing_hint}") from None
    except OSError as exc:
        raise KekError(f"{source}: cannot open {what} ({exc.strerror})") from None
    try:
        info = os.fstat(fd)  # the file we opened, not whatever the name points to now
        if not stat.S_ISREG(info.st_mode):
            raise KekError(f"{source}: not a regular file")
        if info.st_mode & 0o077:
            secret = what.removesuffix(" file")
            raise KekError(
                f"{source}: {what} is readable or writable by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {source}` and "
                f"consider the {secret} exposed if others could have read it"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read(limit)
    finally:
        os.close(fd)

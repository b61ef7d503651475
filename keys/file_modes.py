"""File-mode checks for secrets and stores that only the proxy's user may touch.

The product creates every such file 0600, but a restore from backup, a `cp` under a loose umask
or a Kubernetes Secret volume (0644 by default) can loosen it afterwards. A grant store anyone
can write lets anyone grant themselves access; an audit key anyone can read lets them re-MAC an
edited trail; a TLS private key anyone can read lets them impersonate the proxy. Callers wrap
the message in their own error type.
"""

from __future__ import annotations

import stat
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["GROUP_OR_OTHERS", "GROUP_OR_OTHERS_WRITE", "loose_mode_problem"]

#: Any permission for group or others: secrets (keys) must have none.
GROUP_OR_OTHERS: Final = 0o077
#: Write permission for group or others: stores (grant database) must have none.
GROUP_OR_OTHERS_WRITE: Final = 0o022


def loose_mode_problem(path: Path, what: str, *, forbid: int = GROUP_OR_OTHERS) -> str | None:
    """A message if `path` exists with any of the `forbid` permission bits; None if it is fine.

    A missing file is not a mode problem (the caller reports it its own way). The mode is read
    without following a final symlink only where the caller opened the file itself; here the
    target's mode counts, which is what other users can reach.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"{path}: cannot check the permissions of the {what} ({exc.strerror})"
    if not mode & forbid:
        return None
    kind = "readable or writable" if forbid & 0o044 else "writable"
    return (
        f"{path}: the {what} is {kind} by group or others (mode {stat.S_IMODE(mode):04o}); "
        f"run `chmod 600 {path}` (and its -wal/-shm files, if any), and treat what it guards as "
        "exposed if others could have used it"
    )

"""What the kubelet does to a pod volume's files before the containers see it (fsGroup).

A transcription of kubelet's `SetVolumeOwnership` (pkg/volume/volume_linux.go): with a pod
`fsGroup`, every file and folder of the volume is given to that group, files get g+rw
(g+r on a read-only volume) and folders g+rwx plus setgid — at every mount under the default
policy (`Always`), and under `OnRootMismatch` only while the volume's root is not yet the
group's with those bits. Symlinks are re-grouped but never chmod'ed.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

RW_MASK = 0o660
RO_MASK = 0o440
EXEC_MASK = 0o110


def requires_change(root: Path, fs_group: int, *, read_only: bool = False) -> bool:
    """The kubelet's `requiresPermissionChange`: False when the root already looks done."""
    try:
        info = root.stat()
    except OSError:
        return True
    if info.st_gid != fs_group or not stat.S_ISDIR(info.st_mode):
        return True
    wanted = (RO_MASK if read_only else RW_MASK) | EXEC_MASK
    return stat.S_IMODE(info.st_mode) & wanted != wanted or not info.st_mode & stat.S_ISGID


def mount(root: Path, fs_group: int, policy: str | None, *, read_only: bool = False) -> bool:
    """Apply the pod's fsGroup to the volume at `root` as one mount would; True if it walked."""
    if policy == "OnRootMismatch" and not requires_change(root, fs_group, read_only=read_only):
        return False
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        os.lchown(path, -1, fs_group)
        if stat.S_ISLNK(info.st_mode):
            continue
        mask = RO_MASK if read_only else RW_MASK
        if stat.S_ISDIR(info.st_mode):
            mask |= stat.S_ISGID | EXEC_MASK
        path.chmod(stat.S_IMODE(info.st_mode) | mask)
    return True

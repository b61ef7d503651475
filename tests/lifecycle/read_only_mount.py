"""Run a command with one folder read-only to it, as a Kubernetes Secret mount is to the proxy.

Not root: the folder's mode is enough (chmod 555). Root ignores modes, so the command runs in
its own mount namespace with the folder bind-mounted read-only over itself (`unshare --mount`:
nothing outside that one command sees the mount, and it goes away with the command). Where
neither is possible the test is skipped, with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

_BIND_READ_ONLY = 'mount --bind -o ro "$0" "$0" && exec "$@"'
#: Exit 0 only if the mount worked and writing under it then failed.
_PROBE = 'touch "$0/.probe" 2>/dev/null && exit 3; exit 0'


def read_only_prefix(folder: Path) -> tuple[str, ...]:
    """Make `folder` read-only for a command started with the returned argv prefix."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return ()
    if shutil.which("unshare") is None:
        pytest.skip("running as root without `unshare`: cannot make a folder read-only")
    prefix = ("unshare", "--mount", "sh", "-c", _BIND_READ_ONLY, str(folder))
    probe = subprocess.run(
        [*prefix, "sh", "-c", _PROBE, str(folder)], capture_output=True, check=False, timeout=30
    )
    if probe.returncode != 0:
        pytest.skip(
            "running as root and a read-only bind mount is not allowed here "
            f"(unshare/mount exit {probe.returncode}): cannot make a folder read-only"
        )
    return prefix


def restore(folder: Path) -> None:
    """Undo `read_only_prefix` for the test's own clean-up."""
    if os.geteuid() != 0 and folder.exists():
        folder.chmod(0o755)

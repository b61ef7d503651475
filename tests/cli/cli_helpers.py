"""Shared by the tests that start `phi-proxy` as a process (a uniquely named module)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

PHI_PROXY = Path(sys.executable).parent / "phi-proxy"


def free_ports(count: int) -> list[int]:
    """`count` distinct ports the OS just had free (held together, so never the same twice)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()

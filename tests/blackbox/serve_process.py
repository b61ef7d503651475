"""Shared by the tests that run `phi-proxy serve` as a real process (a uniquely named module)."""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import aiohttp

PHI_PROXY = Path(sys.executable).parent / "phi-proxy"


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port the OS just had free on loopback, never one this process was given before.

    The OS may hand a port it just gave back out again at once: two calls in a row (a
    listener and an admin port) could name the same port, and the process would fail to bind.
    """
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


async def wait_ready(url: str, process, *, within: float = 20.0) -> None:
    """Until `url` answers 200; AssertionError if the process exits or time runs out."""
    deadline = asyncio.get_running_loop().time() + within
    async with aiohttp.ClientSession() as http:
        while asyncio.get_running_loop().time() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"phi-proxy exited early with {process.returncode}")
            try:
                async with http.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("phi-proxy did not become ready in time")

"""A real Prometheus server (Debian's `prometheus`) for tests, and `promtool`.

`running_prometheus` starts one in a temporary folder on a free loopback port, scraping the
given targets twice a second, and stops it afterwards. Without the binaries the test skips, or
fails when PHI_TEST_REQUIRE_PROMETHEUS=1 (CI: scripts/test-prometheus installs them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import pytest
import yaml

if TYPE_CHECKING:
    from pathlib import Path

REQUIRE = "PHI_TEST_REQUIRE_PROMETHEUS"


def require_binary(name: str) -> str:
    """The path of `name`, or skip (fail under PHI_TEST_REQUIRE_PROMETHEUS=1)."""
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (Debian's prometheus; scripts/test-prometheus)"
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{reason} ({REQUIRE}=1 requires it)", pytrace=False)
        pytest.skip(f"{reason}; CI sets {REQUIRE}=1 to make this a failure")
    return found


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool with `args` (and `stdin`); the completed process, output as text."""
    return subprocess.run(
        [require_binary("promtool"), *args],
        input=None if stdin is None else stdin.decode(),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Prometheus:
    """A running server: its base URL and its log file."""

    url: str
    log: Path

    async def query(self, promql: str) -> list[dict]:
        """The instant-query result vector of `promql`."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/query", params={"query": promql}) as resp,
        ):
            body = await resp.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    async def alert_state(self, name: str) -> str | None:
        """The state (pending, firing) of alert `name`, or None while it is not active."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/api/v1/alerts") as resp,
        ):
            body = await resp.json()
        states = [a["state"] for a in body["data"]["alerts"] if a["labels"]["alertname"] == name]
        return states[0] if states else None

    async def alert_when(self, name: str, state: str, *, within: float = 60.0) -> str | None:
        """Poll until alert `name` is in `state` (bounded); the last state seen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen = None
        while loop.time() < deadline:
            seen = await self.alert_state(name)
            if seen == state:
                break
            await asyncio.sleep(0.5)
        return seen

    async def value_when(
        self, promql: str, expected: float, *, at_least: bool = False, within: float = 60.0
    ) -> float:
        """Poll `promql` (one scalar sample) until it equals (or reaches) `expected`.

        Returns the last value seen. Waiting is bounded, not asserted on: the caller asserts on
        the value returned.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        seen = float("nan")
        while loop.time() < deadline:
            result = await self.query(promql)
            if result:
                seen = float(result[0]["value"][1])
                if seen == expected or (at_least and seen >= expected):
                    break
            await asyncio.sleep(0.5)
        return seen


@contextlib.asynccontextmanager
async def running_prometheus(folder: Path, targets: list[str], rule_files: tuple[Path, ...] = ()):
    """Prometheus scraping `targets` (host:port, /metrics) twice a second, until the block ends.

    `rule_files` are loaded and evaluated twice a second.
    """
    binary = require_binary("prometheus")
    config = folder / "prometheus.yml"
    _write_config(
        config,
        {
            "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [
                {
                    "job_name": "phi-proxy",
                    "scrape_interval": "500ms",
                    "scrape_timeout": "500ms",
                    "static_configs": [{"targets": targets}],
                }
            ],
        },
    )
    port = _free_port()
    log = folder / "prometheus.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdout=out,
            stderr=out,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        await _wait_ready(server, process)
        yield server
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


def _write_config(path: Path, config: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))


async def _wait_ready(server: Prometheus, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            if process.returncode is not None:
                raise AssertionError(
                    f"prometheus exited with {process.returncode}: {server.log.read_text()}"
                )
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"{server.url}/-/ready") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise AssertionError(f"prometheus did not become ready: {server.log.read_text()}")

"""`phi-proxy healthcheck` (the image's HEALTHCHECK) asks the admin listener the config names.

Found in issue 15: the Dockerfile probed a hard-coded 127.0.0.1:9090. Here the admin listener
is on another port, and a real `phi-proxy serve` answers.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
import yaml
from cli_helpers import PHI_PROXY, free_ports

from proxy.demo.workspace import DemoPorts, create_workspace
from proxy.healthcheck import admin_url
from proxy.server_settings import AdminSettings
from tests.cli_process import start_cli


@pytest.fixture
def config(tmp_path):
    """The demo's config on free ports (the admin port is never 9090)."""
    proxy_port, portal_port, admin_port = free_ports(3)
    assert admin_port != 9090
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    ports = DemoPorts(proxy=proxy_port, portal=portal_port, admin=admin_port)
    return create_workspace(folder, ports).config_path


async def healthcheck(config, *args):
    process = await asyncio.create_subprocess_exec(
        str(PHI_PROXY), "healthcheck", "-c", str(config), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_healthy_while_serving_and_unhealthy_once_stopped(config):
    """0 while `serve` runs (on the config's admin port), 1 with the reason once it stopped."""
    port = yaml.safe_load(config.read_text())["admin"]["port"]
    status, _, err = await healthcheck(config)
    assert status == 1
    assert f"http://127.0.0.1:{port}/healthz: no answer" in err
    serve = await start_cli(
        [str(PHI_PROXY), "serve", "-c", str(config)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            status, out, err = await healthcheck(config)
            if status == 0:
                break
            await asyncio.sleep(0.1)
        assert (status, out) == (0, f"http://127.0.0.1:{port}/healthz: 200\n"), err
        status, out, err = await healthcheck(config, "--ready")
        assert (status, out) == (0, f"http://127.0.0.1:{port}/readyz: 200\n"), err
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serve.wait(), 30)
    status, _, err = await healthcheck(config)
    assert status == 1
    assert "no answer" in err


async def test_not_ready_prints_what_readyz_names(config):
    """--ready against a proxy without its JWKS: 1, and the line carries /readyz's problems."""
    (config.parent / "jwks.json").unlink()
    serve = await start_cli(
        [str(PHI_PROXY), "serve", "-c", str(config)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if (await healthcheck(config))[0] == 0:
                break
            await asyncio.sleep(0.1)
        status, _, err = await healthcheck(config, "--ready")
    finally:
        serve.send_signal(signal.SIGTERM)
        await asyncio.wait_for(serve.wait(), 30)
    assert status == 1
    assert "/readyz answered 503" in err
    assert "identity.jwks_file" in err


async def test_no_admin_listener_is_reported(config):
    data = yaml.safe_load(config.read_text())
    data["admin"]["port"] = 0
    config.write_text(yaml.safe_dump(data))
    status, _, err = await healthcheck(config)
    assert status == 1
    assert "admin.port is 0" in err


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:9191/healthz"),
        ("0.0.0.0", "http://127.0.0.1:9191/healthz"),  # noqa: S104 - the wildcard under test
        ("::", "http://[::1]:9191/healthz"),
        ("::1", "http://[::1]:9191/healthz"),
        ("localhost", "http://localhost:9191/healthz"),
    ],
)
def test_a_wildcard_admin_host_is_probed_on_loopback(host, url):
    assert admin_url(AdminSettings(host=host, port=9191), "/healthz") == url

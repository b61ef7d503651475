"""A JWKS file the proxy cannot use fails `check-config` and `/readyz`, naming the file.

Found in issue 15: a missing `identity.jwks_file` passed `check-config` and `/readyz`, then
every token got 401.
"""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp
import pytest
import yaml
from cli_helpers import PHI_PROXY, free_ports

from proxy.cli import main
from proxy.demo.workspace import DemoPorts, create_workspace
from tests.cli_process import start_cli


@pytest.fixture
def config(tmp_path):
    """The demo's config, keys and JWKS (jwks.json beside the config), on free ports."""
    proxy_port, portal_port, admin_port = free_ports(3)
    folder = tmp_path / "ws"
    folder.mkdir(mode=0o700)
    ports = DemoPorts(proxy=proxy_port, portal=portal_port, admin=admin_port)
    return create_workspace(folder, ports).config_path


def check(capsys, config):
    status = main(["check-config", "-c", str(config)])
    out, err = capsys.readouterr()
    return status, out, err


BROKEN = {
    "missing": (lambda p: p.unlink(), "cannot be read (No such file or directory)"),
    "a folder": (lambda p: (p.unlink(), p.mkdir()), "cannot be read (Is a directory)"),
    "not JSON": (lambda p: p.write_text("<html>login</html>"), "it is not valid JSON"),
    "no keys list": (lambda p: p.write_text('{"issuer": "x"}'), 'no "keys" list'),
    "no usable key": (lambda p: p.write_text('{"keys": []}'), "holds 0 key(s), none of which"),
}


@pytest.mark.parametrize("case", BROKEN, ids=list(BROKEN))
def test_check_config_fails_naming_the_jwks_file_and_what_to_do(config, capsys, case):
    """Each unusable JWKS file: exit 1, one error naming the setting, the path and the fix."""
    assert check(capsys, config)[0] == 0
    jwks = config.parent / "jwks.json"
    breaks, reason = BROKEN[case]
    breaks(jwks)
    status, out, err = check(capsys, config)
    assert status == 1
    assert "ok:" not in out
    (error,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert f"identity.jwks_file {jwks}:" in error
    assert reason in error
    assert "every bearer token would get 401" in error
    assert "run `phi-proxy check-config` again" in error
    assert "Traceback" not in err


def test_check_config_names_another_providers_jwks_file(config, capsys):
    """A broken JWKS of identity.other_providers is named by its place in the config."""
    data = yaml.safe_load(config.read_text())
    data["identity"]["other_providers"] = [
        {"issuers": ["https://other.example"], "jwks_file": "other-jwks.json"}
    ]
    config.write_text(yaml.safe_dump(data))
    _, _, err = check(capsys, config)
    assert f"identity.other_providers[0].jwks_file {config.parent / 'other-jwks.json'}" in err


async def readyz(url):
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, json.loads(await response.read())


@pytest.mark.slow
async def test_a_served_proxy_without_its_jwks_file_is_not_ready_and_says_which_file(config):
    """`serve` starts, but /readyz answers 503 with jwks false and the file in `problems`."""
    jwks = config.parent / "jwks.json"
    jwks.unlink()
    admin = yaml.safe_load(config.read_text())["admin"]
    url = f"http://127.0.0.1:{admin['port']}/readyz"
    process = await start_cli(
        [str(PHI_PROXY), "serve", "-c", str(config)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        answer = None
        for _ in range(200):
            try:
                answer = await readyz(url)
                break
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
        assert answer is not None, "the admin listener never answered"
        status, body = answer
        assert status == 503
        assert body["status"] == "not ready"
        assert body["checks"]["jwks"] is False
        assert all(ok for name, ok in body["checks"].items() if name != "jwks")
        (problem,) = body["problems"]
        assert problem.startswith(f"identity.jwks_file {jwks}: cannot be read")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), 20)
    assert "identity provider keys cannot be loaded: identity.jwks_file" in err.decode()

"""A KEK in an HSM or KMS that stops working: one clear line at start, fail closed while running.

Real SoftHSM2 token, moto's KMS server. At `check-config` and `serve`, a wrong PIN, missing key
or missing token is one `error:` line and exit status 1. A running proxy whose token is pulled
(or whose KMS goes away) masks every value, refuses writes and reports not ready until the KEK
works again; then it decrypts again by itself.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from lifecycle_helpers import PHI_PROXY, SQLitePortal, config_dict, grant, make_env, write_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "keys"))
from typing import TYPE_CHECKING

from kek_backends import PIN_ENV, REGION, extra_token, new_kms_key, pkcs11_config
from kek_backends import softhsm as softhsm  # noqa: PLC0414 - a fixture

from keys.kek_pkcs11 import generate_pkcs11_kek, read_pin
from keys.settings import kek_provider, keystore_file
from keys.testing_kek import kms_client_env, kms_server
from proxy.app import build_app
from proxy.reload import Reloader
from proxy.runtime import Runtime
from proxy.settings import load_settings
from tests.cli_process import run_cli

if TYPE_CHECKING:
    import subprocess

RECORD = {
    "patient_id": "p-1",
    "ssn": "900-12-3456",
    "member_id": "M-1",
    "medical_history": "synthetic",
}


def _move_to_token(folder: Path, upstream: str, token, monkeypatch) -> Path:
    """Rewrap the folder's keystore under a new key in `token`; the config names that key."""
    monkeypatch.setenv(PIN_ENV, token.pin)
    label = f"kek-{secrets.token_hex(3)}"
    pin = read_pin(pin_env=PIN_ENV, pin_file=None, token_label=token.label)
    generate_pkcs11_kek(module=token.module, token_label=token.label, key_label=label, pin=pin)
    return _move_to(folder, upstream, pkcs11_config(token, label))


def _move_to(folder: Path, upstream: str, kek: dict) -> Path:
    """Rewrap the folder's keystore under `kek` (a keys.kek mapping) and name it in the config."""
    config = config_dict(upstream, watch_interval=3600)
    config["keys"]["kek"] = kek
    old = keystore_file(load_settings(folder / "phi-proxy.yaml").keys)
    path = write_config(folder, config)
    old.rekek(kek_provider(load_settings(path).keys.kek), backup=False)
    return path


@pytest.fixture
async def hsm_proxy(tmp_path, softhsm, monkeypatch):
    """An in-process proxy (with its Reloader) whose KEK is a key in a token of its own."""
    portal = SQLitePortal(tmp_path / "portal.db")
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    upstream = str(portal_server.make_url("")).rstrip("/")
    _, issuer = make_env(tmp_path, upstream, watch_interval=3600)
    token = extra_token(softhsm, "outage")
    config = _move_to_token(tmp_path, upstream, token, monkeypatch)
    runtime = Runtime(load_settings(config))
    server = TestServer(build_app(runtime), host="127.0.0.1")
    await server.start_server()
    reloader = Reloader(runtime, config)
    await reloader.start(signals=False)
    await grant(tmp_path, "alice", "practice-a")
    from lifecycle_helpers import bearer

    http = aiohttp.ClientSession(headers=bearer(issuer, "alice"))
    try:
        yield runtime, reloader, str(server.make_url("")).rstrip("/"), http, token
    finally:
        await http.close()
        await reloader.stop()
        await server.close()
        await portal_server.close()


async def _ssn(http, url: str) -> str:
    async with http.get(f"{url}/api/patients/p-1") as response:
        assert response.status == 200
        return (await response.json())["ssn"]


async def _write(http, url: str, patient_id: str) -> int:
    record = RECORD | {"patient_id": patient_id}
    async with http.post(f"{url}/api/practices/practice-a/patients", json=record) as response:
        await response.read()
        return response.status


class TestRunningProxy:
    async def test_pulled_token_fails_closed_until_it_is_back(self, hsm_proxy, caplog):
        """Token pulled: masks, writes refused, not ready, one alert; back: plaintext again."""
        runtime, reloader, url, http, token = hsm_proxy
        assert await _write(http, url, "p-1") == 201
        assert await _ssn(http, url) == RECORD["ssn"]
        away = token.directory.parent.parent / f"{token.directory.name}.away"
        token.directory.rename(away)
        try:
            await reloader.tick()
            await reloader.tick()  # a second failed check is not a second alert
            checks = await runtime.readiness()
            assert checks["kek"] is False
            assert checks["keystore"] is False
            assert await _ssn(http, url) == "[redacted]"  # last-4 masks need a key: withheld
            assert await _write(http, url, "p-2") >= 400  # nothing encrypts: nothing goes out
            alerts = [r for r in caplog.records if r.getMessage() == "kek_unavailable"]
            assert len(alerts) == 1
            assert "no token labelled" in alerts[0].fields["error"]
            reasons = {
                reason
                for r in caplog.records
                if r.getMessage() == "integrity_failure"
                for reason in r.fields["reasons"]
            }
            assert reasons == {"kek-unavailable"}
        finally:
            away.rename(token.directory)
        await reloader.tick()
        assert (await runtime.readiness())["kek"] is True
        assert await _ssn(http, url) == RECORD["ssn"]
        assert await _write(http, url, "p-3") == 201
        assert any(r.getMessage() == "kek_available" for r in caplog.records)


class TestRunningProxyOnKms:
    async def test_unreachable_kms_fails_closed(self, tmp_path, monkeypatch):
        """KMS gone while serving: the next check masks everything and /readyz says why."""
        for name, value in kms_client_env().items():
            monkeypatch.setenv(name, value)
        portal = SQLitePortal(tmp_path / "portal.db")
        portal_server = TestServer(portal.app(), host="127.0.0.1")
        await portal_server.start_server()
        upstream = str(portal_server.make_url("")).rstrip("/")
        make_env(tmp_path, upstream, watch_interval=3600)
        try:
            with kms_server() as kms:
                kek = {"provider": "aws-kms", "key_id": new_kms_key(kms), "region": REGION}
                config = _move_to(tmp_path, upstream, kek | {"endpoint_url": kms})
                runtime = Runtime(load_settings(config))
                await runtime.open()
                reloader = Reloader(runtime, config)
                await reloader.tick()
                assert (await runtime.readiness())["kek"] is True
                assert runtime.keyring().practices()
            await reloader.tick()  # the server has stopped
            checks = await runtime.readiness()
            assert checks["kek"] is False
            assert not runtime.keyring().practices()
            assert "cannot be reached" in runtime.kek_problem
            await runtime.close()
        finally:
            await portal_server.close()


def _proxy(*args: str, env: dict) -> subprocess.CompletedProcess:
    return run_cli([PHI_PROXY, *args], text=True, env=env, timeout=60, check=False)


class TestAtStart:
    @pytest.mark.parametrize(
        ("breakage", "says"),
        [
            ("wrong PIN", "refused the PIN from env:PHI_PROXY_PKCS11_PIN"),
            ("missing key", "has no AES key labelled"),
            ("missing token", "no token labelled"),
            ("missing module", "keys.kek.module"),
        ],
    )
    def test_one_clear_error_line_and_exit_1(self, tmp_path, softhsm, monkeypatch, breakage, says):
        """check-config and serve stop with exactly one `error:` line naming the problem."""
        make_env(tmp_path, "http://127.0.0.1:9", watch_interval=3600)
        token = extra_token(softhsm, "start")
        config = _move_to_token(tmp_path, "http://127.0.0.1:9", token, monkeypatch)
        settings = load_settings(config).keys.kek
        kek = settings.model_dump(mode="json")
        env = {k: v for k, v in os.environ.items() if k != "PHI_PROXY_CONFIG"}
        env |= token.env() | {PIN_ENV: token.pin}
        if breakage == "wrong PIN":
            env[PIN_ENV] = "not-the-pin"
        elif breakage == "missing key":
            kek["key_label"] = "absent"
        elif breakage == "missing token":
            kek["token_label"] = "absent"
        else:
            kek["module"] = str(tmp_path / "absent" / "libsofthsm2.so")
        full = config_dict("http://127.0.0.1:9", watch_interval=3600)
        full["keys"]["kek"] = kek
        write_config(tmp_path, full)
        for command in (["check-config"], ["serve"]):
            done = _proxy(*command, "-c", str(config), env=env)
            errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
            assert done.returncode == 1, (command, done.stderr)
            assert len(errors) == 1, (command, done.stderr)
            assert says in errors[0], (command, errors[0])
            assert token.pin not in done.stderr

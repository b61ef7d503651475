"""A real proxy in front of a real (scripted) portal, with real keys, JWTs and SQLite grants.

Every black-box test talks HTTP to the proxy and asserts on the bytes that come back, or on
what the portal received.
"""

from __future__ import annotations

import logging

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from blackbox_env import PLANTED, ProxyEnv, write_env_files
from blackbox_portal import RecordingPortal

from keys.settings import keystore_file
from proxy.app import build_app
from proxy.grants import SQLiteGrantStore
from proxy.runtime import Runtime


@pytest.fixture
async def proxy_env(tmp_path):
    portal = RecordingPortal()
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    config_path, settings, issuer = write_env_files(
        tmp_path, str(portal_server.make_url("")).rstrip("/")
    )
    proxy_server = TestServer(build_app(Runtime(settings)), host="127.0.0.1")
    await proxy_server.start_server()
    grants = SQLiteGrantStore(settings.grants.sqlite_path, max_ttl=settings.grants.max_ttl)
    http = aiohttp.ClientSession(auto_decompress=False)
    env = ProxyEnv(
        folder=tmp_path,
        config_path=config_path,
        settings=settings,
        keyring=keystore_file(settings.keys).load(),
        issuer=issuer,
        grants=grants,
        portal=portal,
        proxy_url=str(proxy_server.make_url("")).rstrip("/"),
        http=http,
        _servers=[proxy_server, portal_server],
    )
    try:
        yield env
    finally:
        await http.close()
        await grants.close()
        for server in env._servers:
            await server.close()


@pytest.fixture(autouse=True)
def _no_planted_phi_in_logs(caplog):
    """After every black-box test, no planted PHI value appears in any captured log record."""
    caplog.set_level(logging.DEBUG)
    yield
    from proxy.logs import JsonFormatter

    formatter = JsonFormatter()
    rendered = "\n".join(formatter.format(r) for r in caplog.records)
    raw = "\n".join(str(r.__dict__) for r in caplog.records)
    for value in PLANTED:
        assert value not in rendered, "a planted PHI value reached a log line"
        assert value not in raw, "a planted PHI value reached a log record"

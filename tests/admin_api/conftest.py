"""A real proxy and its real admin API listener (HTTP), sharing one real SQLite grant store.

The black-box helpers (keys, JWKS, scripted portal, proxy) come from tests/blackbox; admin
tokens are minted by the same test issuer the proxy's JWKS trusts.
"""

import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "blackbox"))

import aiohttp
import pytest
from admin_helpers import AdminClient, admin_overrides
from aiohttp.test_utils import TestServer
from blackbox_env import assert_no_planted_phi_in, running_proxy_env

from proxy.admin_api.app import build_admin_api_app


@pytest.fixture
def admin_api_section():
    """The `admin_api:` section (a test may override this fixture)."""
    return admin_overrides()["admin_api"]


@pytest.fixture
async def admin_env(tmp_path, admin_api_section):
    """(proxy env, admin client): the admin API on its own port, the proxy on another."""
    overrides = {"admin_api": admin_api_section, "audit": {"flush_interval": 20, "fsync": False}}
    async with running_proxy_env(tmp_path, overrides=overrides) as env:
        app = build_admin_api_app(env.settings, config_path=env.config_path)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        async with aiohttp.ClientSession() as http:
            yield env, AdminClient(env, http, str(server.make_url("")).rstrip("/"))
        await server.close()


@pytest.fixture(autouse=True)
def _no_planted_phi_in_logs(caplog):
    """After every test, no planted PHI value appears in any captured log record."""
    caplog.set_level(logging.DEBUG)
    yield
    assert_no_planted_phi_in(caplog.records)

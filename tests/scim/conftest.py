"""A real proxy and its real SCIM listener (HTTP), sharing one real SQLite grant store.

The black-box helpers (keys, JWKS, scripted portal, proxy) come from tests/blackbox.
"""

import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "blackbox"))

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from blackbox_env import running_proxy_env
from scim_helpers import CLOCK, ScimClient, scim_overrides

from proxy.scim.app import build_scim_app


@pytest.fixture(autouse=True)
def _real_time():
    """Every test starts at real time (a test may move the SCIM clock forward)."""
    CLOCK.offset = timedelta(0)
    yield
    CLOCK.offset = timedelta(0)


@pytest.fixture
async def scim_env(tmp_path, request):
    """(proxy env, SCIM client): the SCIM app served on its own port, the proxy on another.

    Users map to subjects by externalId; parametrize with "userName" for the other mapping.
    """
    subject_from = getattr(request, "param", "externalId")
    overrides = scim_overrides(tmp_path, subject_from)
    async with running_proxy_env(tmp_path, overrides=overrides) as env:
        app = build_scim_app(env.settings, config_path=env.config_path, clock=CLOCK)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        async with aiohttp.ClientSession() as http:
            yield env, ScimClient(http, str(server.make_url("/scim/v2")))
        await server.close()

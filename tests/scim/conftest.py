"""A real proxy and its real SCIM listener (HTTP), sharing one real SQLite grant store.

The black-box helpers (keys, JWKS, scripted portal, proxy) come from tests/blackbox.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "blackbox"))

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from blackbox_env import running_proxy_env
from scim_helpers import GROUPS, SECRET, ScimClient

from proxy.scim.app import build_scim_app


def scim_overrides(folder: Path, subject_from: str = "externalId") -> dict:
    secret_file = folder / "scim.secret"
    secret_file.write_text(SECRET + "\n")
    secret_file.chmod(0o600)
    return {
        "scim": {
            "enabled": True,
            "port": 0,
            "secret_file": "./scim.secret",
            "issuer": "https://idp.test.invalid",
            "subject_from": subject_from,
            "groups": GROUPS,
        }
    }


@pytest.fixture
async def scim_env(tmp_path, request):
    """(proxy env, SCIM client): the SCIM app served on its own port, the proxy on another.

    Users map to subjects by externalId; parametrize with "userName" for the other mapping.
    """
    subject_from = getattr(request, "param", "externalId")
    overrides = scim_overrides(tmp_path, subject_from)
    async with running_proxy_env(tmp_path, overrides=overrides) as env:
        server = TestServer(
            build_scim_app(env.settings, config_path=env.config_path), host="127.0.0.1"
        )
        await server.start_server()
        async with aiohttp.ClientSession() as http:
            yield env, ScimClient(http, str(server.make_url("/scim/v2")))
        await server.close()

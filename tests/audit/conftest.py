"""A real proxy with an `audit:` section, in front of the black-box suite's scripted portal."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

_BLACKBOX = Path(__file__).parents[1] / "blackbox"
sys.path.insert(0, str(_BLACKBOX))
_spec = importlib.util.spec_from_file_location("blackbox_conftest", _BLACKBOX / "conftest.py")
assert _spec is not None
assert _spec.loader is not None
blackbox = importlib.util.module_from_spec(_spec)
sys.modules["blackbox_conftest"] = blackbox
_spec.loader.exec_module(blackbox)

from blackbox_portal import RecordingPortal  # noqa: E402

from keys.settings import keystore_file  # noqa: E402
from proxy.app import RUNTIME_KEY, build_app  # noqa: E402
from proxy.grants import SQLiteGrantStore  # noqa: E402
from proxy.runtime import Runtime  # noqa: E402

AUDIT = {
    "flush_interval": 20,
    "fsync": False,
    "checkpoint_every": 5,
    "alerts": {"masked_burst_threshold": 3, "masked_burst_window_seconds": 60},
}


@pytest.fixture
def audit_overrides():
    """The `audit:` section of the test config (a test may override this fixture)."""
    return dict(AUDIT)


@pytest.fixture
async def audit_env(tmp_path, audit_overrides):
    """Like the black-box `proxy_env`, with the audit section and a handle on the runtime."""
    portal = RecordingPortal()
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    config_path, settings, issuer = blackbox.write_env_files(
        tmp_path,
        str(portal_server.make_url("")).rstrip("/"),
        overrides={"audit": audit_overrides},
    )
    app = build_app(Runtime(settings))
    proxy_server = TestServer(app, host="127.0.0.1")
    await proxy_server.start_server()
    grants = SQLiteGrantStore(settings.grants.sqlite_path, max_ttl=settings.grants.max_ttl)
    http = aiohttp.ClientSession(auto_decompress=False)
    env = blackbox.ProxyEnv(
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
    env.runtime = app[RUNTIME_KEY]  # type: ignore[attr-defined]
    try:
        yield env
    finally:
        await http.close()
        await grants.close()
        for server in env._servers:
            await server.close()
        _assert_no_planted_phi(tmp_path)


def _assert_no_planted_phi(folder: Path) -> None:
    for path in folder.glob("audit.jsonl*"):
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for value in blackbox.PLANTED:
                assert value not in text, f"a planted PHI value reached {path.name}"


@pytest.fixture(autouse=True)
def _no_planted_phi_in_logs(caplog):
    """After every audit test, no planted PHI value appears in any captured log record."""
    caplog.set_level(logging.DEBUG)
    yield
    from proxy.logs import JsonFormatter

    formatter = JsonFormatter()
    rendered = "\n".join(formatter.format(r) for r in caplog.records)
    for value in blackbox.PLANTED:
        assert value not in rendered, "a planted PHI value reached a log line"

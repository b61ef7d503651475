"""Building blocks of the black-box environment: config, key files, JWT issuer, handles."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import yaml
from aiohttp.test_utils import TestServer
from blackbox_portal import RecordingPortal
from yarl import URL

from keys.config_file import load_section
from keys.kek import generate_kek_file
from keys.settings import KeySettings, keystore_file
from proxy.app import RUNTIME_KEY, build_app, build_runner
from proxy.grants import GrantRequest, GrantStore, open_grant_store
from proxy.identity import DemoIssuer, Subject
from proxy.logs import JsonFormatter
from proxy.runtime import Runtime
from proxy.settings import Settings, load_settings

if TYPE_CHECKING:
    from keys.keyring import Keyring

PRACTICES = ("practice-a", "practice-b", "practice-c")
AUDIENCE = "phi-proxy-tests"

#: Every PHI value a black-box test plants; a final check proves none reached any log line.
PLANTED: set[str] = set()


def base_config(upstream_url: str) -> dict:
    return {
        "upstream": {"url": upstream_url, "timeout": 5, "connect_timeout": 2},
        "admin": {"port": 0},
        "limits": {"max_request_body": 64 * 1024, "max_response_body": 1024 * 1024},
        "identity": {
            "issuers": ["https://idp.test.invalid"],
            "audience": AUDIENCE,
            "jwks_file": "./jwks.json",
        },
        "grants": {"store": "./grants.sqlite3", "max_ttl": "90d"},
        "keys": {"keystore": "./keystore.json", "kek": {"provider": "file", "path": "./kek.b64"}},
        "fields": {
            "classes": {
                "ssn": {
                    "mask": {"keep_last": 4, "template": "***-**-{last}"},
                    "deterministic": True,
                },
                "insurance_id": {"mask": {"text": "[redacted]"}},
                "history": {"mask": None},
            },
            "selectors": [
                {"class": "ssn", "keys": ["ssn", "social_security_number"]},
                {"class": "insurance_id", "keys": ["member_id", "insurance_id"]},
                {"class": "history", "keys": ["medical_history", "history"]},
                {
                    "class": "ssn",
                    "path": "$..identifier[?(@.system=='http://hl7.org/fhir/sid/us-ssn')].value",
                },
            ],
            "record": {"practice_keys": ["practice_id"], "id_keys": ["patient_id", "id"]},
            "max_depth": 64,
        },
        "write_routes": [
            {
                "method": "POST",
                "path": "/api/practices/{practice_id}/patients",
                "practice_from": {"path_param": "practice_id"},
            },
            {
                "method": "POST",
                "path": "/api/bookings",
                "practice_from": {"body_key": "practice_id"},
            },
        ],
    }


class AccessLines(logging.Handler):
    """The request ids of the proxy's access lines (logged once a request's audit is queued)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.request_ids: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        request_id = getattr(record, "fields", {}).get("request_id")
        if request_id:
            self.request_ids.add(request_id)


async def written(env: ProxyEnv, *, within: float = 30.0) -> None:
    """Wait until the audit events of every request `env.get` was answered are in the trail.

    The proxy queues a request's event before it logs the access line, so once every answered
    request has its access line, one flush writes them all: a condition, not a sleep that a
    busy host may outlast. `within` bounds a failing test only.
    """
    deadline = time.monotonic() + within
    while not set(env.answered) <= env.access_lines.request_ids:
        assert time.monotonic() < deadline, "an answered request never got its access line"
        await asyncio.sleep(0.005)
    assert env.runtime is not None
    await env.runtime._audit.flush()


async def break_the_trail(env: ProxyEnv) -> None:
    """Make the audit trail impossible to append to: a folder where the file was.

    Queued events are written first, or the sink's next flush would recreate the file.
    """
    assert env.runtime is not None
    await env.runtime._audit.flush()
    trail = env.folder / "audit.jsonl"
    trail.unlink(missing_ok=True)
    trail.mkdir()


class ProxyTestServer(TestServer):
    """aiohttp's TestServer serving the app through the runner `phi-proxy serve` uses."""

    async def _make_runner(self, **kwargs):
        return build_runner(self.app, **kwargs)


@dataclass
class ProxyEnv:
    """Handles on everything a black-box test needs."""

    folder: Path
    config_path: Path
    settings: Settings
    keyring: Keyring
    issuer: DemoIssuer
    grants: GrantStore
    portal: RecordingPortal
    proxy_url: str
    http: aiohttp.ClientSession
    runtime: Runtime | None = None
    _servers: list[TestServer] = field(default_factory=list)
    #: X-Request-Id of every answer `get` returned, in order (to wait for their audit events).
    answered: list[str] = field(default_factory=list)
    #: The request ids of the proxy's access lines so far (see `written`).
    access_lines: AccessLines = field(default_factory=AccessLines)

    def token(self, sub: str, **kw) -> str:
        return self.issuer.mint(sub, now=datetime.now(UTC).timestamp(), **kw)

    def auth(self, sub: str, **kw) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(sub, **kw)}"}

    def subject(self, sub: str) -> Subject:
        return Subject(self.issuer.issuer, sub)

    def encrypt(self, practice: str, field_class: str, value: str, **kw) -> str:
        PLANTED.add(value)
        return self.keyring.encrypt(practice, field_class, value, **kw)

    async def grant(
        self,
        sub: str,
        practice: str,
        *,
        fields: frozenset[str] | None = None,
        not_before: datetime | None = None,
        expires_in: timedelta = timedelta(days=1),
        issuer: str | None = None,
    ):
        now = datetime.now(UTC)
        return await self.grants.add(
            GrantRequest(
                subject=self.subject(sub) if issuer is None else Subject(issuer, sub),
                practice=practice,
                field_classes=fields,
                expires_at=now + expires_in,
                created_by="tests",
                reason="black-box test",
                not_before=not_before,
            ),
            now=now,
        )

    async def get(self, path: str, *, sub: str | None = None, **kw) -> aiohttp.ClientResponse:
        headers = dict(kw.pop("headers", {}))
        if sub is not None:
            headers.update(self.auth(sub))
        url = URL(self.proxy_url + path, encoded=True)  # send the path byte for byte
        response = await self.http.request(kw.pop("method", "GET"), url, headers=headers, **kw)
        await response.read()
        if request_id := response.headers.get("X-Request-Id"):
            self.answered.append(request_id)
        return response


def write_env_files(folder: Path, upstream_url: str, *, overrides: dict | None = None):
    """KEK, keystore with three practices, JWKS and config in `folder`; returns the pieces.

    `overrides` replaces top-level sections, except that an `upstream` without a `url` only
    changes the settings it names (e.g. `{"upstream": {"timeout": 1}}`).
    """
    issuer = DemoIssuer(issuer="https://idp.test.invalid", audience=AUDIENCE)
    issuer.write_jwks(folder / "jwks.json")
    config = base_config(upstream_url)
    for key, value in (overrides or {}).items():
        partial = key == "upstream" and "url" not in value
        config[key] = {**config[key], **value} if partial else value
    config_path = folder / "phi-proxy.yaml"
    config_path.write_text(yaml.dump(config, Dumper=_Dumper, sort_keys=False))
    own_keys = config["keys"] != base_config(upstream_url)["keys"]
    if own_keys:
        generate_kek_file(folder / "kek.b64")
    else:
        _copy_base_keys(folder)
    settings = load_settings(config_path)
    if own_keys:
        store_file = keystore_file(settings.keys)
        store_file.create()
        store_file.add_practices(PRACTICES)
    return config_path, settings, issuer


_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _copy_base_keys(folder: Path) -> None:
    """A KEK and a keystore with PRACTICES (base_config's `keys`), copied into `folder`.

    Made once per test process with phi-proxy's own code, then copied (mode 0600 kept):
    writing a keystore syncs it to disk several times, and a thousand tests each made one.
    Each folder's copy is its own, so a test that rotates or shreds changes only its copy.
    """
    for name in ("kek.b64", "keystore.json"):
        shutil.copy2(_base_keys() / name, folder / name)


@functools.cache
def _base_keys() -> Path:
    """The folder `_copy_base_keys` copies from (removed when the process exits)."""
    template = Path(tempfile.mkdtemp(prefix="phi-base-keys-"))
    atexit.register(shutil.rmtree, template, ignore_errors=True)
    generate_kek_file(template / "kek.b64")
    (template / "keys.yaml").write_text(
        yaml.dump({"keys": base_config("http://127.0.0.1:9")["keys"]}, Dumper=_Dumper)
    )
    store_file = keystore_file(load_section(template / "keys.yaml", "keys", KeySettings))
    store_file.create()
    store_file.add_practices(PRACTICES)
    return template


@contextlib.asynccontextmanager
async def running_proxy_env(folder: Path, *, overrides: dict | None = None):
    """Start a scripted portal and a real proxy configured from `folder`; yield a ProxyEnv."""
    portal = RecordingPortal()
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    upstream = str(portal_server.make_url("")).rstrip("/")
    try:
        async with proxy_env_for(folder, upstream, portal=portal, overrides=overrides) as env:
            env._servers.append(portal_server)  # tests close it to take the portal down
            yield env
    finally:
        await portal_server.close()  # idempotent


@contextlib.asynccontextmanager
async def proxy_env_for(
    folder: Path, upstream_url: str, *, portal: RecordingPortal, overrides: dict | None = None
):
    """A real proxy (config, keys, JWKS, grants written to `folder`) in front of `upstream_url`.

    The caller owns the portal at `upstream_url`; `portal` is what `ProxyEnv.portal` reports.
    """
    config_path, settings, issuer = write_env_files(folder, upstream_url, overrides=overrides)
    app = build_app(Runtime(settings))
    proxy_server = ProxyTestServer(app, host="127.0.0.1")
    await proxy_server.start_server()
    grants = open_grant_store(settings.grants)  # SQLite unless the overrides name PostgreSQL
    http = aiohttp.ClientSession(auto_decompress=False)
    env = ProxyEnv(
        folder=folder,
        config_path=config_path,
        settings=settings,
        keyring=keystore_file(settings.keys).load(),
        issuer=issuer,
        grants=grants,
        portal=portal,
        proxy_url=str(proxy_server.make_url("")).rstrip("/"),
        http=http,
        runtime=app[RUNTIME_KEY],
        _servers=[proxy_server],
    )
    access = logging.getLogger("phi_proxy.access")
    access.addHandler(env.access_lines)
    try:
        yield env
    finally:
        access.removeHandler(env.access_lines)
        await http.close()
        await grants.close()
        for server in env._servers:
            await server.close()


def assert_no_planted_phi_in(records: list[logging.LogRecord]) -> None:
    """No planted PHI value in any captured log record, rendered or raw."""
    formatter = JsonFormatter()
    rendered = "\n".join(formatter.format(r) for r in records)
    raw = "\n".join(str(r.__dict__) for r in records)
    for value in PLANTED:
        assert value not in rendered, "a planted PHI value reached a log line"
        assert value not in raw, "a planted PHI value reached a log record"

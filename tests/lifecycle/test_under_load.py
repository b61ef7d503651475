"""Rotation under load: a real `phi-proxy serve` keeps answering while keys change under it.

A real proxy process serves writes and reads from several concurrent clients while an operator
runs `rotate --all` (+ SIGHUP), `rotate-kek` (+ a config edit picked up by the file watcher)
and `rewrap` on the portal's live table. No request may fail, and every record written before,
during and after must still decrypt for the authorized caller.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
from itertools import count

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from lifecycle_helpers import (
    ProxyProcess,
    SQLitePortal,
    bearer,
    config_dict,
    grant,
    make_env,
    run_keys_async,
    write_config,
)

from keys.kek import FileKek
from keys.keystore import KeystoreFile
from keys.token_format import TOKEN_PATTERN, kid_of

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_all_under_primary(folder) -> None:
    """Every stored value is a token under its practice's current key (opened with the new KEK)."""
    ring = KeystoreFile(folder / "keystore.json", FileKek(folder / "kek2.b64")).load()
    primaries = {ring.primary(p).kid for p in ("practice-a", "practice-b")}
    with sqlite3.connect(folder / "portal.db") as conn:
        values = [
            v for row in conn.execute("SELECT ssn, member_id, history FROM patients") for v in row
        ]
    assert values
    assert all(TOKEN_PATTERN.fullmatch(v) for v in values)
    assert {kid_of(v) for v in values} <= primaries, "rewrap left nothing under an old key"


async def _operator_steps(proxy: ProxyProcess, config, folder, upstream: str, port: int) -> None:
    """Operator: rotate --all + SIGHUP, rotate-kek + config edit (watcher), rewrap the table."""
    await asyncio.sleep(0.5)
    reloads = proxy.count("reload applied")
    code, _, err = await run_keys_async("rotate", "--all", config=config)
    assert code == 0, err
    assert proxy.process is not None
    proxy.process.send_signal(signal.SIGHUP)
    await proxy.wait_for("reload applied", reloads + 1)
    await asyncio.sleep(0.3)

    code, _, err = await run_keys_async(
        "rotate-kek", "--generate", "--new-kek", str(folder / "kek2.b64"), config=config
    )
    assert code == 0, err
    await proxy.wait_for("reload refused", 1)  # old KEK cannot open the new file
    reloads = proxy.count("reload applied")
    new_config = config_dict(upstream, port=port, watch_interval=0.2)
    new_config["keys"]["kek"]["path"] = "./kek2.b64"
    write_config(folder, new_config)
    await proxy.wait_for("reload applied", reloads + 1)
    await asyncio.sleep(0.3)

    code, _out, err = await run_keys_async(
        "rewrap",
        "--dsn",
        f"sqlite:///{folder / 'portal.db'}",
        "--table",
        "patients",
        "--columns",
        "ssn,member_id,history",
        "--batch-size",
        "20",
        config=config,
    )
    assert code == 0, err
    await asyncio.sleep(0.3)


async def _assert_reads(http, url: str, headers: dict, written: dict) -> None:
    """Every record written during the run reads back in full for the authorized caller."""
    for pid, record in written.items():
        async with http.get(f"{url}/api/patients/{pid}", headers=headers) as response:
            body = await response.json(content_type=None)
        assert response.status == 200
        assert (body["ssn"], body["member_id"], body["medical_history"]) == (
            record["ssn"],
            record["member_id"],
            record["medical_history"],
        )


async def test_rotate_rotate_kek_and_rewrap_while_serving(tmp_path):
    """No request fails and every record decrypts for its authorized caller throughout."""
    portal = SQLitePortal(tmp_path / "portal.db")
    portal_server = TestServer(portal.app(), host="127.0.0.1")
    await portal_server.start_server()
    upstream = str(portal_server.make_url("")).rstrip("/")
    port = _free_port()
    config, issuer = make_env(tmp_path, upstream, port=port, watch_interval=0.2)
    await grant(tmp_path, "alice", "practice-a")
    await grant(tmp_path, "alice", "practice-b")
    proxy = ProxyProcess()
    await proxy.start(config)
    url = f"http://127.0.0.1:{port}"
    written: dict[str, dict] = {}
    failures: list[str] = []
    stop = asyncio.Event()
    ids = count()

    async def client(worker: int, http: aiohttp.ClientSession) -> None:
        headers = bearer(issuer, "alice")
        while not stop.is_set():
            n = next(ids)
            pid = f"w{worker}-{n:05d}"
            practice = ("practice-a", "practice-b")[n % 2]
            record = {
                "patient_id": pid,
                "ssn": f"{n % 1000:03d}-12-{n:04d}",
                "member_id": f"M{n}",
                "medical_history": f"visit {n}",
            }
            async with http.post(
                f"{url}/api/practices/{practice}/patients", json=record, headers=headers
            ) as response:
                await response.read()
                if response.status != 201:
                    failures.append(f"POST {pid}: {response.status}")
                    continue
            written[pid] = record
            async with http.get(f"{url}/api/patients/{pid}", headers=headers) as response:
                body = await response.json(content_type=None)
                if response.status != 200 or body.get("ssn") != record["ssn"]:
                    failures.append(f"GET {pid}: {response.status}")

    async with aiohttp.ClientSession() as http:
        workers = [asyncio.create_task(client(w, http)) for w in range(4)]
        try:
            await _operator_steps(proxy, config, tmp_path, upstream, port)
        finally:
            stop.set()
            await asyncio.gather(*workers)

        assert failures == []
        assert len(written) > 50
        await _assert_reads(http, url, bearer(issuer, "alice"), written)
    await proxy.stop()
    await portal_server.close()
    assert proxy.process is not None
    assert proxy.process.returncode == 0

    _assert_all_under_primary(tmp_path)
    assert not [
        line
        for line in proxy.lines
        if line.get("level") == "error" and not line.get("msg", "").startswith("reload refused")
    ]

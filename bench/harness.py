"""Processes under test and how they are measured: nginx, the pass proxy, phi-proxy, wrk, /proc.

Everything binds to 127.0.0.1 on free ports inside one throwaway folder; `Servers.stop` ends
only the processes it started, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from proxy.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def commit_label() -> str:
    """The checked-out commit, marked when keys/, proxy/ or bench/ have uncommitted changes."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "keys", "proxy", "bench")
    return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else "")


def locate_tool(name: str) -> str | None:
    """The path of `name` on PATH or in /usr/sbin (not on a non-root PATH), or None."""
    return shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )


def ensure_tool(name: str, package: str) -> str | None:
    """The path of `name`, installing its Debian package if missing and possible."""
    found = locate_tool(name)
    if found or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    print(f"bench: installing {package} ...", file=sys.stderr)
    for cmd in (
        ["apt-get", "install", "-y", "-q", package],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", package],
    ):
        subprocess.run(cmd, check=False, capture_output=True, timeout=600)
        found = locate_tool(name)
        if found:
            return found
    return None


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def process_tree(pid: int) -> list[int]:
    out = [pid]
    for kid in _children(pid):
        out.extend(process_tree(kid))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def wait_idle(pids: list[int], *, quiet: float = 0.3, timeout: float = 30) -> float:
    """Wait until `pids` use (almost) no CPU for `quiet` seconds; returns the seconds waited.

    A proxy keeps working on requests wrk abandoned when its run ended (aiohttp does not
    cancel handlers on disconnect); with slow requests that backlog would be billed to the
    next cell measured on the same process.
    """
    begun = time.monotonic()
    last = cpu_seconds(pids)
    while time.monotonic() - begun < timeout:
        time.sleep(quiet)
        now = cpu_seconds(pids)
        if now - last <= 0.02 * quiet:
            break
        last = now
    return time.monotonic() - begun


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
        except OSError:
            continue
    return total


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    measure_children: bool = False

    def pids(self) -> list[int]:
        return process_tree(self.process.pid) if self.measure_children else [self.process.pid]


@dataclass
class Servers:
    folder: Path
    started: dict[str, Server] = field(default_factory=dict)

    def spawn(self, name: str, port: int, argv: list[str], *, tree: bool = False) -> Server:
        log = (self.folder / f"{name}.log").open("wb")
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        server = Server(name, port, process, measure_children=tree)
        self.started[name] = server
        return server

    def wait_ready(self, name: str, path: str, timeout: float = 30) -> None:
        server = self.started[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                log = (self.folder / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited early:\n{log}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer on port {server.port} within {timeout}s")

    def stop(self) -> None:
        for server in reversed(list(self.started.values())):
            if server.process.poll() is None:
                server.process.terminate()
        for server in self.started.values():
            try:
                server.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.process.kill()


def nginx_conf(folder: Path, www: Path, *, portal_port: int, proxy_port: int | None) -> Path:
    """One nginx (1 worker) as the static portal, and optionally a 1-worker proxy_pass in front."""
    temp = folder / "nginx-tmp"
    temp.mkdir(exist_ok=True)
    proxy_block = ""
    if proxy_port is not None:
        proxy_block = f"""
    upstream portal {{ server 127.0.0.1:{portal_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{proxy_port};
        client_max_body_size 16m;
        location / {{
            proxy_pass http://portal;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 64 16k;
        }}
    }}"""
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{portal_port};
        client_max_body_size 16m;
        root {www};
        default_type application/json;
        location = /api/bookings {{ return 201 '{{"status":"booked"}}'; }}
        location /fhir/ {{ default_type application/fhir+json; }}
        location / {{ }}
    }}{proxy_block}
}}
""")
    return conf


def nginx_workers(master: Server) -> list[int]:
    return process_tree(master.process.pid)


def write_proxy_config(folder: Path, base: dict, name: str, port: int) -> Path:
    config = json.loads(json.dumps(base))
    config["listen"] = {"host": "127.0.0.1", "port": port}
    # One audit trail per server (its workers share it, as in production): servers under test
    # must not contend for another server's trail lock.
    audit = config.setdefault("audit", {}) if "audit" in Settings.model_fields else {}
    if audit.get("enabled", True):
        audit.setdefault("path", f"./audit-{name}.jsonl")
        audit.setdefault("key_file", f"./audit-{name}.key")
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class WrkResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_s: float
    rss: int

    @property
    def cpu_us_per_req(self) -> float:
        return 1e6 * self.cpu_s / self.requests if self.requests else float("nan")


def run_wrk(
    wrk: str,
    port: int,
    *,
    path: str,
    pids: list[int],
    seconds: float,
    connections: int,
    pool: int = 1,
    auth: str = "",
    body_file: str = "",
) -> WrkResult:
    env = dict(
        os.environ,
        BENCH_PATH=path,
        BENCH_POOL=str(pool),
        BENCH_AUTH=auth,
        BENCH_BODY_FILE=body_file,
    )
    before = cpu_seconds(pids)
    done = subprocess.run(
        [
            wrk,
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(BENCH / "wrk.lua"),
            f"http://127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=seconds + 60,
    )
    cpu = cpu_seconds(pids) - before
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith('{"requests"'))
    data = json.loads(line)
    secs = data["duration_us"] / 1e6
    errors = sum(v for k, v in data.items() if k.startswith("err_"))
    return WrkResult(
        requests=data["requests"],
        seconds=secs,
        rps=data["requests"] / secs if secs else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        cpu_s=cpu,
        rss=rss_bytes(pids),
    )


@dataclass
class OneProxy:
    """The nginx portal with the dataset, and one phi-proxy in front of it (profile, soak)."""

    facts: dict
    port: int
    server: Server

    @property
    def pid(self) -> int:
        return self.server.process.pid


@contextlib.contextmanager
def one_proxy(nginx: str, prefix: str, *, config_changes: dict | None = None) -> Iterator[OneProxy]:
    """Start the portal and one `phi-proxy serve`; stop both and delete their folders after."""
    import dataset  # noqa: PLC0415 - bench scripts run from bench/; keeps harness import-light

    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    www = Path(tempfile.mkdtemp(prefix=f"{prefix}-www-"))
    os.chmod(www, 0o755)  # noqa: PTH101, S103 - nginx workers read the pages
    servers = Servers(folder)
    try:
        portal_port, phi_port = free_port(), free_port()
        conf = nginx_conf(folder, www, portal_port=portal_port, proxy_port=None)
        (www / "api" / "nophi").mkdir(parents=True)
        (www / "api" / "nophi" / "0").write_text("{}")
        servers.spawn("portal", portal_port, [nginx, "-c", str(conf), "-e", str(folder / "e.log")])
        servers.wait_ready("portal", "/api/nophi/0")
        facts = dataset.build(folder, www, portal_url=f"http://127.0.0.1:{portal_port}")
        base = {**facts["config_base"], **(config_changes or {})}
        cfg = write_proxy_config(folder, base, "phi", phi_port)
        phi = servers.spawn("phi", phi_port, [str(VENV_BIN / "phi-proxy"), "serve", "-c", str(cfg)])
        servers.wait_ready("phi", "/api/nophi/0")
        yield OneProxy(facts, phi_port, phi)
    finally:
        servers.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(www, ignore_errors=True)

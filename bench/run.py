"""`make bench`: every configuration against the same synthetic portal, in alternation.

Round r runs, for each page size, every configuration once (A B C … A B C …), so drift in the
machine (other processes, thermal state) hits all configurations alike. Per cell we keep the
median requests/s and latencies over rounds, and CPU µs/request of the proxy process(es) as
total CPU / total requests. Writes bench/results/latest.json and bench/REPORT.md.

`--only fhir` (or any group names/prefixes, comma-separated: `patients/100,nophi`) runs only
those cells (and, for fhir, its micro cell) and merges them into the existing latest.json, so
the rest of the report keeps the figures (and commit) of the last full run.

A full run also times `phi-audit verify` and `report` on a 1,000,000-event trail
(`audit_scale.py`; the trail is generated once and cached under $TMPDIR/phi-bench-audit);
`--only audit` runs just that and merges it in, `--audit-events 0` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import audit_scale
import dataset
import fhir
import harness
import micro
import report

from keys.native import core_description

# (name, server, path kind, auth, body) — "server" picks the process under test.
CONFIGS = {
    "direct": ("portal", None),
    "nginx": ("nginx", None),
    "pass": ("pass", None),
    "phi-decrypt": ("phi", "granted"),
    "phi-decrypt-cold": ("phi", "granted"),
    "phi-mask": ("phi", "ungranted"),
    "phi-decrypt-x2": ("phi2", "granted"),
    "phi-nophi": ("phi", "granted"),
    "phi-nophi-anon": ("phi", None),  # diagnostic: no JWT to verify
    "phi-decrypt-noaudit": ("phi-noaudit", "granted"),  # diagnostic: audit trail disabled
    "phi-write": ("phi", "granted"),
    # FHIR bundle through a phi-proxy with the example config's field policy (four selectors)
    "phi-fhir-grantee": ("phi-fhir", "granted"),
    "phi-fhir-nongrantee": ("phi-fhir", "ungranted"),
}
FHIR_GROUP = "fhir/bundle"


def cells(sizes: tuple[int, ...]) -> list[tuple[str, str, int]]:
    """(group, configuration, records): the grid, grouped so alternation happens per group."""
    out: list[tuple[str, str, int]] = []
    for n in sizes:
        group = f"patients/{n}"
        configs = ["direct", "nginx", "pass", "phi-decrypt", "phi-mask"]
        if n:
            configs.append("phi-decrypt-cold")
        if n == 100:
            configs += ["phi-decrypt-x2", "phi-decrypt-noaudit"]
        out.extend((group, config, n) for config in configs)
    for n in (20, 100):
        nophi = ("direct", "pass", "phi-nophi", "phi-nophi-anon")
        out.extend((f"nophi/{n}", config, n) for config in nophi)
    out.extend(("write", config, 1) for config in ("direct", "pass", "phi-write"))
    fhir_configs = ("direct", "pass", "phi-fhir-grantee", "phi-fhir-nongrantee")
    out.extend((FHIR_GROUP, config, 1) for config in fhir_configs)
    return out


def selected(group: str, only: list[str] | None) -> bool:
    """`group` is one of the --only names (a name matches itself and the groups under it)."""
    return only is None or any(group == name or group.startswith(name + "/") for name in only)


def _request_for(config: str, group: str, n: int, facts: dict, folder: Path) -> dict:
    kind = group.split("/", maxsplit=1)[0]
    _, who = CONFIGS[config]
    auth = facts["tokens"][who] if who else ""
    if kind == "write":
        return {"path": "/api/bookings", "auth": auth, "body_file": str(folder / "booking.json")}
    if kind == "nophi":
        return {"path": f"/api/nophi/{n}", "auth": auth}
    if kind == "fhir":
        return {"path": fhir.PATH, "auth": auth}
    if config == "phi-decrypt-cold":
        return {"path": f"/api/cold/{n}", "pool": facts["cold_pool"][str(n)], "auth": auth}
    return {"path": f"/api/patients/{n}", "auth": auth}


def start(folder: Path, www: Path, nginx: str | None) -> tuple[harness.Servers, dict]:
    servers = harness.Servers(folder)
    ports = {
        name: harness.free_port()
        for name in ("portal", "nginx", "pass", "phi", "phi2", "phi-noaudit", "phi-fhir")
    }
    if nginx:
        conf = harness.nginx_conf(
            folder, www, portal_port=ports["portal"], proxy_port=ports["nginx"]
        )
        servers.spawn(
            "portal",
            ports["portal"],
            [nginx, "-c", str(conf), "-e", str(folder / "nginx-error.log")],
            tree=True,
        )
    else:
        servers.spawn(
            "portal",
            ports["portal"],
            [
                sys.executable,
                str(harness.BENCH / "portal.py"),
                "--port",
                str(ports["portal"]),
                "--root",
                str(www),
            ],
        )
    servers.wait_ready("portal", "/api/nophi/0")
    portal_url = f"http://127.0.0.1:{ports['portal']}"
    facts = dataset.build(folder, www, portal_url=portal_url)
    facts["fhir"] = dataset.build_fhir(folder, www)
    servers.spawn(
        "pass",
        ports["pass"],
        [
            sys.executable,
            str(harness.BENCH / "passproxy.py"),
            "--port",
            str(ports["pass"]),
            "--upstream",
            portal_url,
        ],
    )
    phi = str(harness.VENV_BIN / "phi-proxy")
    for name, workers in (("phi", 1), ("phi2", 2)):
        cfg = harness.write_proxy_config(folder, facts["config_base"], name, ports[name])
        servers.spawn(
            name, ports[name], [phi, "serve", "-c", str(cfg), "--workers", str(workers)], tree=True
        )
    cfg = harness.write_proxy_config(
        folder, fhir.proxy_config(facts["config_base"]), "phi-fhir", ports["phi-fhir"]
    )
    servers.spawn("phi-fhir", ports["phi-fhir"], [phi, "serve", "-c", str(cfg)], tree=True)
    for name in ("pass", "phi", "phi2", "phi-fhir"):
        servers.wait_ready(name, "/api/nophi/0")
    try:  # diagnostic only: skipped if this build has no `audit.enabled` switch
        base = dict(facts["config_base"], audit={"enabled": False})
        cfg = harness.write_proxy_config(folder, base, "phi-noaudit", ports["phi-noaudit"])
        servers.spawn("phi-noaudit", ports["phi-noaudit"], [phi, "serve", "-c", str(cfg)])
        servers.wait_ready("phi-noaudit", "/api/nophi/0")
    except RuntimeError:
        server = servers.started.pop("phi-noaudit", None)
        if server is not None and server.process.poll() is None:
            server.process.terminate()
            server.process.wait(timeout=15)
    if nginx:
        servers.started["nginx"] = servers.started["portal"]  # one nginx, two server blocks
    facts["ports"] = ports
    return servers, facts


def _connections_for(group: str, args: argparse.Namespace, pids: list[int]) -> int:
    """wrk connections for a cell; FHIR cells (~40 ms requests) get a short queue and start idle.

    With 32 connections on a 40 ms request the proxy would still be working through ~1.3 s of
    abandoned requests when wrk stops, billed to the next cell on the same process.
    """
    if group != FHIR_GROUP:
        return int(args.connections)
    harness.wait_idle(pids)
    return min(int(args.connections), int(args.fhir_connections))


def measure(args: argparse.Namespace) -> dict:
    wrk = harness.ensure_tool("wrk", "wrk")
    if wrk is None:
        sys.exit("bench: wrk is not installed and could not be installed (apt-get install wrk)")
    nginx = harness.ensure_tool("nginx", "nginx-light")
    notes: list[str] = []
    if nginx is None:
        notes.append("nginx could not be installed: the portal is aiohttp and `nginx` is skipped")
    sizes = tuple(int(s) for s in args.sizes.split(","))
    folder = Path(tempfile.mkdtemp(prefix="phi-bench-"))
    www = Path(tempfile.mkdtemp(prefix="phi-bench-www-"))
    os.chmod(www, 0o755)  # noqa: PTH101, S103 - nginx workers read the pages
    started = time.monotonic()
    grid = [c for c in cells(sizes) if (nginx or c[1] != "nginx") and selected(c[0], args.only)]
    if not grid:
        sys.exit(f"bench: --only {','.join(args.only or [])} selects no cell")
    raw: dict[tuple[str, str], list[harness.WrkResult]] = {}
    spent: dict[str, float] = {}  # wall seconds of wrk runs per group (what each group costs)
    stub = www / "api" / "nophi"
    stub.mkdir(parents=True)
    (stub / "0").write_text('{"count":0,"patients":[]}')  # readiness page until build() runs
    servers, facts = start(folder, www, nginx)
    if "phi-noaudit" not in servers.started:
        notes.append("phi-proxy without audit could not start: `phi-decrypt-noaudit` skipped")
    grid = [c for c in grid if CONFIGS[c[1]][0] in servers.started]
    try:

        def one(group: str, config: str, n: int, seconds: float) -> harness.WrkResult:
            server = servers.started[CONFIGS[config][0]]
            req = _request_for(config, group, n, facts, folder)
            pids = server.pids()  # nginx: the proxy_pass block shares the portal's worker
            begun = time.monotonic()
            connections = _connections_for(group, args, pids)
            result = harness.run_wrk(
                wrk,
                facts["ports"][CONFIGS[config][0]],
                pids=pids,
                seconds=seconds,
                connections=connections,
                **req,
            )
            spent[group] = spent.get(group, 0.0) + time.monotonic() - begun
            return result

        for group, config, n in grid:  # warm-up: caches, connection pools, JIT-free but lazy
            one(group, config, n, args.warmup)
        for round_index in range(args.rounds):
            for group, config, n in grid:
                result = one(group, config, n, args.duration)
                raw.setdefault((group, config), []).append(result)
            print(
                f"bench: round {round_index + 1}/{args.rounds} done "
                f"({time.monotonic() - started:.0f}s)",
                file=sys.stderr,
            )
    finally:
        servers.stop()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(www, ignore_errors=True)
    results = []
    for (group, config), runs in raw.items():
        requests = sum(r.requests for r in runs)
        results.append(
            {
                "group": group,
                "config": config,
                "records": next(n for g, c, n in grid if g == group and c == config),
                "rps": statistics.median(r.rps for r in runs),
                "rps_runs": [round(r.rps, 1) for r in runs],
                "p50_ms": statistics.median(r.p50_ms for r in runs),
                "p99_ms": statistics.median(r.p99_ms for r in runs),
                "cpu_us_per_req": 1e6 * sum(r.cpu_s for r in runs) / requests if requests else None,
                "rss_mb": max(r.rss for r in runs) / 2**20,
                "requests": requests,
                "errors": sum(r.errors for r in runs),
            }
        )
    return {
        "results": results,
        "notes": notes,
        "seconds": round(time.monotonic() - started, 1),
        "settings": {
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "wrk_threads": 1,
        },
        "page_bytes": facts["page_bytes"],
        "cold_pool": facts["cold_pool"],
        "group_seconds": {g: round(t, 1) for g, t in spent.items()},
        "fhir": (
            {
                "bundle": facts["fhir"],
                "connections": min(args.connections, args.fhir_connections),
            }
            if selected(FHIR_GROUP, args.only)
            else {}
        ),
    }


def machine() -> dict:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "missing"

    cpu_model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {
            d: version(d) for d in ("aiohttp", "cryptography", "orjson", "pydantic", "PyJWT")
        },
        "commit": harness.commit_label(),
        "load_before": os.getloadavg(),
        "core": core_description(),
    }


def tool_versions() -> dict[str, str]:
    """wrk's and nginx's first version line; asked after the run, which may install them."""

    def first_line(name: str, flag: str) -> str:
        path = harness.locate_tool(name)
        if path is None:
            return f"{name} missing"
        done = subprocess.run([path, flag], capture_output=True, text=True, check=False, timeout=10)
        lines = (done.stdout + done.stderr).strip().splitlines()
        return lines[0] if lines else f"{name} (no version output)"

    return {"wrk": first_line("wrk", "--version"), "nginx": first_line("nginx", "-v")}


def merge(old: dict | None, new: dict, only: list[str]) -> dict:
    """The last full run's figures with the --only groups (and their sections) replaced."""
    if old is None:
        return new
    keep = [r for r in old["results"] if not selected(r["group"], only)]
    old["results"] = keep + new["results"]
    old.setdefault("group_seconds", {}).update(new["group_seconds"])
    if new["fhir"]:
        old["fhir"] = new["fhir"]
    old.setdefault("notes", [])
    old["notes"] = [n for n in old["notes"] if not n.startswith("--only")] + [
        (
            f"--only {','.join(only)}: those groups were measured separately at commit "
            f"{new['machine']['commit']} ({new['seconds']:.0f} s); every other figure is from "
            "the full run described above"
        )
    ]
    return old


def _audit_only(args: argparse.Namespace) -> None:
    """`--only audit`: time phi-audit on the large trail and merge it into --out."""
    out = Path(args.out)
    if not out.exists():
        sys.exit(f"bench: --only audit needs an earlier full run's {out} to merge into")
    data = json.loads(out.read_text())
    data["audit_scale"] = audit_scale.run(args.audit_events or 1_000_000)
    out.write_text(json.dumps(data, indent=1))
    Path(args.report).write_text(report.render(data))
    print(f"bench: wrote the audit section of {out} and {args.report}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--fhir-connections", type=int, default=4, help="wrk connections of the FHIR cells"
    )
    parser.add_argument("--sizes", default=",".join(map(str, dataset.SIZES)))
    parser.add_argument("--out", default=str(harness.BENCH / "results" / "latest.json"))
    parser.add_argument("--report", default=str(harness.BENCH / "REPORT.md"))
    parser.add_argument(
        "--only",
        type=lambda text: [name.strip() for name in text.split(",") if name.strip()],
        help="run only these groups (e.g. fhir, patients/100, audit) and merge them into --out",
    )
    parser.add_argument(
        "--audit-events",
        type=int,
        default=1_000_000,
        help="events in the trail `phi-audit verify|report` are timed on (0: skip)",
    )
    args = parser.parse_args()
    if args.only == ["audit"]:
        _audit_only(args)
        return
    info = machine()
    data = measure(args)
    data["machine"] = info | tool_versions()
    if args.only is None:
        data["micro"] = micro.run()
    if data["fhir"]:
        begun = time.monotonic()
        data["fhir"]["micro"] = micro.run_fhir()
        data["fhir"] |= {
            "micro_seconds": round(time.monotonic() - begun, 1),
            "commit": info["commit"],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "settings": data["settings"],
            "load_before": info["load_before"],
            "host": f"{info['cores']} cores ({info['cpu']}), Python {info['python']}",
            "core": info["core"],
        }
    if args.audit_events and (args.only is None or "audit" in args.only):
        data["audit_scale"] = audit_scale.run(args.audit_events)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    seconds = data["seconds"]
    if args.only is not None:
        data = merge(json.loads(out.read_text()) if out.exists() else None, data, args.only)
    out.write_text(json.dumps(data, indent=1))
    Path(args.report).write_text(report.render(data))
    print(f"bench: wrote {out} and {args.report} in {seconds:.0f}s", file=sys.stderr)


if __name__ == "__main__":
    main()

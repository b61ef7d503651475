"""Profile phi-proxy under wrk load with py-spy; print the top functions by own and total time.

    .venv/bin/python bench/profile.py --cell patients/100 --who granted --seconds 10

Writes the collapsed stacks to bench/results/profile-<cell>-<who>.txt (load them in
speedscope or flamegraph.pl). Needs py-spy (`pip install py-spy`, the `bench` extra).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import harness


def summarize(collapsed: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        samples += count
        frames = [
            f.split(" (")[0] + " " + f.rsplit("/", 1)[-1].rstrip(")") for f in stack.split(";")
        ]
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    modules: collections.Counter[str] = collections.Counter()
    for frame, count in own.items():
        where = frame.rsplit(" ", 1)[-1].split(":")[0]
        parts = where.split("/")
        modules["/".join(parts[:2]) if len(parts) > 1 else parts[0]] += count
    lines = [f"{samples} samples", "", "own %  module"]
    lines += [f"{100 * c / samples:5.1f}  {m}" for m, c in modules.most_common(top)]
    lines += ["", "own %  function"]
    lines += [f"{100 * c / samples:5.1f}  {f}" for f, c in own.most_common(top)]
    lines += ["", "total %  function"]
    lines += [f"{100 * c / samples:5.1f}  {f}" for f, c in total.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cell", default="patients/100", help="patients/N, cold/N or nophi/N")
    parser.add_argument("--who", default="granted", choices=("granted", "ungranted", "anon"))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--no-audit", action="store_true", help="profile with audit disabled")
    args = parser.parse_args()
    wrk = harness.ensure_tool("wrk", "wrk")
    nginx = harness.ensure_tool("nginx", "nginx-light")
    spy = shutil.which("py-spy") or str(harness.VENV_BIN / "py-spy")
    if not wrk or not nginx or not Path(spy).exists():
        sys.exit("profile: needs wrk, nginx and py-spy")
    audit_off = {"audit": {"enabled": False}} if args.no_audit else None
    with harness.one_proxy(nginx, "phi-prof", config_changes=audit_off) as proxy:
        kind, n = args.cell.split("/")
        pool = proxy.facts["cold_pool"][n] if kind == "cold" else 1
        out = harness.BENCH / "results" / f"profile-{kind}-{n}-{args.who}.txt"
        out.parent.mkdir(exist_ok=True)
        load = threading.Thread(
            target=harness.run_wrk,
            args=(wrk, proxy.port),
            kwargs={
                "path": f"/api/{kind}/{n}",
                "pids": [proxy.pid],
                "seconds": args.seconds + 2,
                "connections": 32,
                "pool": pool,
                "auth": proxy.facts["tokens"].get(args.who, ""),
            },
        )
        load.start()
        subprocess.run(
            [
                spy,
                "record",
                "--pid",
                str(proxy.pid),
                "--duration",
                str(args.seconds),
                "--rate",
                "250",
                "--format",
                "raw",
                "--output",
                str(out),
                "--nonblocking",
            ],
            check=True,
            capture_output=True,
        )
        load.join()
        print(summarize(out, args.top))


if __name__ == "__main__":
    main()

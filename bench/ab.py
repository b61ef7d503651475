"""A/B: this checkout's phi-proxy against another checkout's, same host, same portal, alternating.

    git worktree add /tmp/before <commit>
    .venv/bin/python bench/ab.py /tmp/before --cells nophi/100 patients/100 --rounds 4

Both proxies run from this virtualenv with the same config, keystore and grants; the other
checkout's code is put first on PYTHONPATH for its proxy only. Prints the median CPU µs per
request of each proxy per cell (from /proc, as `make bench` measures it): the way to tell
whether a change costs the hot path something, without a whole `make bench` and without
comparing numbers across hosts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import harness


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("other", type=Path, help="the other checkout (e.g. a git worktree)")
    parser.add_argument("--cells", nargs="+", default=["nophi/100", "patients/0", "patients/100"])
    parser.add_argument("--who", default="granted", choices=("granted", "ungranted", "anon"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=3)
    args = parser.parse_args()
    if not (args.other / "proxy" / "__init__.py").exists():
        sys.exit(f"ab: {args.other} is not a phi-proxy checkout")
    wrk = harness.ensure_tool("wrk", "wrk")
    nginx = harness.ensure_tool("nginx", "nginx-light")
    if not wrk or not nginx:
        sys.exit("ab: needs wrk and nginx")
    with harness.one_proxy(nginx, "phi-ab") as this:
        folder = Path(this.server.process.args[-1]).parent
        servers = harness.Servers(folder)
        port = harness.free_port()
        config = harness.write_proxy_config(folder, this.facts["config_base"], "other", port)
        os.environ["PYTHONPATH"] = str(args.other.resolve())
        try:
            argv = [str(harness.VENV_BIN / "phi-proxy"), "serve", "-c", str(config)]
            other = servers.spawn("other", port, argv)
        finally:
            del os.environ["PYTHONPATH"]
        try:
            servers.wait_ready("other", "/api/nophi/0")
            auth = this.facts["tokens"].get(args.who, "")
            runs: dict[tuple[str, str], list[float]] = {}
            for _ in range(args.rounds):
                for cell in args.cells:
                    for name, to, pid in (
                        ("this", this.port, this.pid),
                        ("other", port, other.process.pid),
                    ):
                        result = harness.run_wrk(
                            wrk,
                            to,
                            path=f"/api/{cell}",
                            pids=[pid],
                            seconds=args.seconds,
                            connections=32,
                            auth=auth,
                        )
                        runs.setdefault((cell, name), []).append(result.cpu_us_per_req)
            for cell in args.cells:
                mine = statistics.median(runs[cell, "this"])
                theirs = statistics.median(runs[cell, "other"])
                print(
                    f"{cell:14} this {mine:7.1f}  other {theirs:7.1f} µs/req  "
                    f"({100 * (mine - theirs) / theirs:+.1f}%)"
                )
        finally:
            servers.stop()


if __name__ == "__main__":
    main()

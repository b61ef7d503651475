"""`make soak`: phi-proxy at saturation for a long time; 0 errors and RSS growth < 10%.

The load mixes the paths that allocate the most: cold decrypt over a pool of distinct pages
larger than the decrypted-value cache (so the cache fills and evicts all the time), warm
decrypt, and masking. RSS is sampled after each slice; growth is measured from the end of the
first slice (after warm-up: pools, caches and allocator arenas have reached their working size)
to the end of the run. Writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import harness

MIX = (
    ("cold", "granted"),
    ("patients", "granted"),
    ("patients", "ungranted"),
)


def _summarize(samples: list[dict], *, alive: bool, out: Path) -> bool:
    """Write soak.json and print the verdict; True if the soak passed."""
    base = samples[min(len(MIX), len(samples)) - 1]["rss_mb"]  # after one full mix: warmed up
    last = samples[-1]["rss_mb"]
    data = {
        "seconds": round(samples[-1]["t"], 1),
        "requests": sum(s["requests"] for s in samples),
        "errors": sum(s["errors"] for s in samples),
        "rss_base_mb": base,
        "rss_last_mb": last,
        "rss_max_mb": max(s["rss_mb"] for s in samples),
        "rss_growth": (last - base) / base,
        "proxy_alive": alive,
        "commit": harness.commit_label(),
        "samples": samples,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    ok = data["errors"] == 0 and data["rss_growth"] < 0.10 and alive
    print(
        f"soak: {data['requests']} requests in {data['seconds']:.0f}s, {data['errors']} errors, "
        f"RSS {base:.1f} → {last:.1f} MiB ({100 * data['rss_growth']:+.1f}%): "
        f"{'PASS' if ok else 'FAIL'}",
        file=sys.stderr,
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--slice", type=int, default=20, help="seconds per wrk run")
    parser.add_argument("--records", type=int, default=100)
    parser.add_argument("--out", default=str(harness.BENCH / "results" / "soak.json"))
    args = parser.parse_args()
    wrk = harness.ensure_tool("wrk", "wrk")
    nginx = harness.ensure_tool("nginx", "nginx-light")
    if not wrk or not nginx:
        sys.exit("soak: needs wrk and nginx (apt-get install wrk nginx-light)")
    samples: list[dict] = []
    with harness.one_proxy(nginx, "phi-soak") as proxy:
        n = str(args.records)
        started = time.monotonic()
        deadline = started + 60 * args.minutes
        index = 0
        while time.monotonic() < deadline:
            kind, who = MIX[index % len(MIX)]
            seconds = max(1, min(args.slice, round(deadline - time.monotonic())))
            result = harness.run_wrk(
                wrk,
                proxy.port,
                path=f"/api/{kind}/{n}",
                pids=[proxy.pid],
                seconds=seconds,
                connections=32,
                pool=proxy.facts["cold_pool"][n] if kind == "cold" else 1,
                auth=proxy.facts["tokens"][who],
            )
            samples.append(
                {
                    "t": round(time.monotonic() - started, 1),
                    "path": kind,
                    "who": who,
                    "rps": round(result.rps, 1),
                    "errors": result.errors,
                    "requests": result.requests,
                    "rss_mb": round(result.rss / 2**20, 2),
                }
            )
            print(f"soak: {samples[-1]}", file=sys.stderr)
            index += 1
        alive = proxy.server.process.poll() is None
    ok = _summarize(samples, alive=alive, out=Path(args.out))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

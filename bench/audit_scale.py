"""`phi-audit verify` and `report` on a large genuine trail, timed as an operator would see them.

Each command is run as a fresh process (`python -m proxy.audit -c config.yaml …`, start-up
included) against a trail from `audit_trail.cached_trail` (written by the proxy's own payload
and sealing code, cached between runs). Measured: `verify`; `verify --public-key` (links and
signed checkpoints only, no audit key); `report --subject` (one former staff member: the
incident question); `report --practice --since --until` (one practice's day). The unfiltered
report is not timed at this size: over a million events it lists tens of millions of rows.

`--compare-with /work/main` times another checkout's `proxy` package too (e.g. the code before
a change), on the same trail, alternating runs so drift hits both alike.

    python bench/audit_scale.py --events 1000000 [--repeat 3] [--compare-with DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import audit_trail

from proxy.audit.files import trail_files

REPO = Path(__file__).resolve().parent.parent
#: The targets of issue 15, part 5, per command, in seconds.
TARGET_SECONDS = 5.0


def _commands(folder: Path) -> dict[str, list[str]]:
    config = str(folder / "config.yaml")
    subject = audit_trail.subject_name(42)
    return {
        "verify": ["-c", config, "verify"],
        "verify --public-key (no audit key)": [
            "verify",
            "--public-key",
            str(folder / "public.pem"),
            *map(str, trail_files(folder / "audit.jsonl")),  # oldest first
        ],
        "report --subject": ["-c", config, "report", "--subject", subject],
        "report --practice --since --until (one day)": [
            "-c",
            config,
            "report",
            "--practice",
            "practice-b",
            "--since",
            "2026-03-15",
            "--until",
            "2026-03-16",
        ],
    }


def _run_once(tree: Path, argv: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds (the command and its worker processes), status, last line."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    begun = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "proxy.audit", *argv],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=900,
    )
    seconds = time.monotonic() - begun
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    last = (done.stdout.strip().splitlines() or [""])[-1]
    return seconds, cpu, done.returncode, last


def _commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def run(events: int = 1_000_000, *, repeat: int = 3, compare_with: Path | None = None) -> dict:
    """Time every command `repeat` times on an `events`-event trail; medians in seconds."""
    begun = time.monotonic()
    folder = audit_trail.cached_trail(events)
    generated = time.monotonic() - begun
    trees = {"this checkout": REPO} | ({"compared": compare_with} if compare_with else {})
    times: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    cpus: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    outputs: dict[str, dict[str, str]] = {name: {} for name in trees}
    for _ in range(repeat):
        for label, argv in _commands(folder).items():
            for name, tree in trees.items():
                seconds, cpu, status, last = _run_once(tree, argv)
                if status != 0:
                    raise RuntimeError(f"{name}: phi-audit {label} exited {status}: {last}")
                times[name].setdefault(label, []).append(seconds)
                cpus[name].setdefault(label, []).append(cpu)
                outputs[name][label] = last
    size = sum(p.stat().st_size for p in folder.glob("audit.jsonl*"))
    return {
        "commit": _commit(),
        "events": events,
        "trail_bytes": size,
        "trail": str(folder),
        "generate_or_cache_seconds": round(generated, 1),
        "repeat": repeat,
        "load_before": os.getloadavg(),
        "cores": len(os.sched_getaffinity(0)),
        "target_seconds": TARGET_SECONDS,
        "median_seconds": {
            name: {label: round(statistics.median(v), 2) for label, v in cells.items()}
            for name, cells in times.items()
        },
        "median_cpu_seconds": {
            name: {label: round(statistics.median(v), 2) for label, v in cells.items()}
            for name, cells in cpus.items()
        },
        "runs_seconds": {
            name: {label: [round(x, 2) for x in v] for label, v in cells.items()}
            for name, cells in times.items()
        },
        "last_lines": outputs,
        "compared_tree": str(compare_with) if compare_with else None,
    }


def render(data: dict) -> list[str]:
    """A Markdown section for bench/REPORT.md."""
    names = list(data["median_seconds"])
    out = [
        f"## Audit trail at incident scale (bench/audit_scale.py, {data['events']:,} events)",
        "",
        *([f"Commit {data['commit']}."] if data.get("commit") else []),
        (
            f"Trail: {data['trail_bytes'] / 2**20:,.0f} MB in "
            f"{len(list(Path(data['trail']).glob('audit.jsonl*'))) - 1} file(s), written by "
            "the proxy's own sealing code (`audit_trail.py`); each command a fresh process, "
            f"median of {data['repeat']} runs, {data['cores']} cores, load before "
            f"{', '.join(f'{x:.2f}' for x in data['load_before'])} (the host is shared)."
        ),
        "",
        "| command | "
        + " | ".join(f"{n}: wall s | {n}: CPU s" for n in names)
        + f" | wall < {data['target_seconds']:.0f} s |",
        "|---|" + "---:|---:|" * len(names) + "---|",
    ]
    first = data["median_seconds"][names[0]]
    cpu = data.get("median_cpu_seconds", {})
    for label, seconds in first.items():
        cells = " | ".join(
            f"{data['median_seconds'][n][label]:.2f} | "
            f"{cpu.get(n, {}).get(label, float('nan')):.2f}"
            for n in names
        )
        verdict = "met" if seconds < data["target_seconds"] else "missed (see load)"
        out.append(f"| {label} | {cells} | {verdict} |")
    out += [
        "",
        (
            "CPU s: user + system time of the command and its worker processes. On a shared "
            "host the wall time includes waiting for a core; with both cores free, the wall "
            "time of the parallel part approaches half its CPU time."
        ),
    ]
    return [*out, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare-with", type=Path, help="another checkout to time as well")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    data = run(args.events, repeat=args.repeat, compare_with=args.compare_with)
    print("\n".join(render(data)))
    for name, lines in data["last_lines"].items():
        for label, line in lines.items():
            print(f"{name} | {label}: {line}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()

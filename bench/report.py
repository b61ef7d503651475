"""Render bench/results/latest.json as bench/REPORT.md (tables, targets, then ANALYSIS.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = (
    "direct",
    "nginx",
    "pass",
    "phi-nophi",
    "phi-nophi-anon",
    "phi-decrypt",
    "phi-decrypt-cold",
    "phi-decrypt-x2",
    "phi-decrypt-noaudit",
    "phi-mask",
    "phi-write",
    "phi-fhir-grantee",
    "phi-fhir-nongrantee",
)
FHIR_GROUP = "fhir/bundle"
#: FHIR targets: transform CPU per bundle (micro), proxy CPU per GET as a multiple of pass.
FHIR_TRANSFORM_MS = 2.0
FHIR_CPU_X_PASS = 3.0


#: Runs recorded before the compiled core existed carry no core name.
_BEFORE_CORE = "pure-Python core (before the compiled core)"


def _index(data: dict) -> dict[tuple[str, str], dict]:
    return {(r["group"], r["config"]): r for r in data["results"]}


def _ratio(idx: dict, group: str, config: str, base: str) -> float | None:
    a, b = idx.get((group, config)), idx.get((group, base))
    if not a or not b or not b["rps"]:
        return None
    return a["rps"] / b["rps"]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _per_value_slope(idx: dict, config: str) -> float | None:
    """Added CPU µs per PHI value: slope of CPU/request between 100 and 1000 records, minus pass."""
    points = []
    for name in (config, "pass"):
        hi, lo = idx.get(("patients/1000", name)), idx.get(("patients/100", name))
        if not hi or not lo or hi["cpu_us_per_req"] is None or lo["cpu_us_per_req"] is None:
            return None
        points.append((hi["cpu_us_per_req"] - lo["cpu_us_per_req"]) / (3 * 900))
    return points[0] - points[1]


def targets(data: dict) -> list[tuple[str, str, str, bool | None]]:
    idx = _index(data)
    micro = data.get("micro", {})
    rows: list[tuple[str, str, str, bool | None]] = []

    def ratio_row(label: str, group: str, config: str, base: str, bar: float) -> None:
        value = _ratio(idx, group, config, base)
        rows.append(
            (label, f"≥ {bar}x", _fmt(value) + "x", None if value is None else value >= bar)
        )

    # The bars of issue 13 (compiled core): ratios against `pass` in one run.
    ratio_row("phi-nophi vs pass (100 records, no PHI)", "nophi/100", "phi-nophi", "pass", 0.85)
    ratio_row("phi-decrypt vs pass, 20 records", "patients/20", "phi-decrypt", "pass", 0.6)
    ratio_row("phi-decrypt warm vs pass, 100 records", "patients/100", "phi-decrypt", "pass", 0.5)
    ratio_row(
        "phi-decrypt cold vs pass, 100 records", "patients/100", "phi-decrypt-cold", "pass", 0.35
    )
    ratio_row("phi-mask vs pass, 100 records", "patients/100", "phi-mask", "pass", 0.7)
    ratio_row(
        "2 workers vs 1 worker, 100 records", "patients/100", "phi-decrypt-x2", "phi-decrypt", 1.6
    )
    for temp, bar in (("cold", 0.3), ("warm", 0.1)):
        value = micro.get(f"added_decrypt_{temp}_us_per_value")
        rows.append(
            (
                f"added CPU per PHI value, {temp} (micro)",
                f"≤ {bar} µs",
                _fmt(value, 3) + " µs",
                None if value is None else value <= bar,
            )
        )
        cfg = "phi-decrypt-cold" if temp == "cold" else "phi-decrypt"
        slope = _per_value_slope(idx, cfg)
        rows.append(
            (
                f"added CPU per PHI value, {temp} (bench slope 100→1000)",
                f"≤ {bar} µs",
                _fmt(slope, 3) + " µs",
                None if slope is None else slope <= bar,
            )
        )
    proof = micro.get("nophi_proof_64kb_us")
    rows.append(
        (
            "no-PHI proof of a 64 KB page (micro)",
            "≤ 10 µs",
            _fmt(proof, 1) + " µs",
            None if proof is None else proof <= 10,
        )
    )
    soak_file = BENCH / "results" / "soak.json"
    if soak_file.exists():
        soak = json.loads(soak_file.read_text())
        ok = soak["errors"] == 0 and soak["rss_growth"] < 0.10
        rows.append(
            (
                f"soak ({soak['seconds'] / 60:.0f} min at saturation)",
                "0 errors, RSS < +10%",
                (
                    f"{soak['errors']} errors, RSS {100 * soak['rss_growth']:+.1f}% "
                    f"({soak['requests']:,} requests, commit {soak.get('commit', 'not recorded')})"
                ),
                ok,
            )
        )
    return rows


def _cpu_x(idx: dict, group: str, config: str, base: str) -> float | None:
    a, b = idx.get((group, config)), idx.get((group, base))
    if not a or not b or not a["cpu_us_per_req"] or not b["cpu_us_per_req"]:
        return None
    return a["cpu_us_per_req"] / b["cpu_us_per_req"]


def fhir_targets(data: dict) -> list[tuple[str, str, str, bool | None]]:
    idx = _index(data)
    micro = data.get("fhir", {}).get("micro", {})
    rows: list[tuple[str, str, str, bool | None]] = []
    for who in ("grantee", "nongrantee"):
        us = micro.get(f"{who}_warm_cpu_us")
        ms = None if us is None else us / 1000
        rows.append(
            (
                f"transform_response CPU per bundle, {who} (micro, warm)",
                f"≤ {FHIR_TRANSFORM_MS:g} ms",
                _fmt(ms) + " ms",
                None if ms is None else ms <= FHIR_TRANSFORM_MS,
            )
        )
    for who in ("grantee", "nongrantee"):
        value = _cpu_x(idx, FHIR_GROUP, f"phi-fhir-{who}", "pass")
        rows.append(
            (
                f"phi-proxy CPU per GET vs pass, {who}",
                f"≤ {FHIR_CPU_X_PASS:g}x",
                _fmt(value) + "x",
                None if value is None else value <= FHIR_CPU_X_PASS,
            )
        )
    return rows


def fhir_section(data: dict) -> list[str]:
    """The FHIR bundle cells: when measured, the bundle, targets, wrk table, micro figures."""
    section = data.get("fhir")
    idx = _index(data)
    if not section or not any(g == FHIR_GROUP for g, _ in idx):
        return []
    bundle = section.get("bundle", {})
    s = section.get("settings", data["settings"])
    micro = section.get("micro", {})
    resources = bundle.get("resources", {})
    tokens = bundle.get("tokens", {})
    seconds = data.get("group_seconds", {}).get(FHIR_GROUP)
    out = [
        f"## FHIR bundle ({bundle.get('bytes', 0) / 1000:.0f} KB, Synthea-shaped)",
        "",
        (
            f"Measured at commit {section.get('commit', data['machine']['commit'])} on "
            f"{section.get('date', 'the date of the run')}"
            + (f", {section['host']}" if "host" in section else "")
            + " (load average before: "
            + ", ".join(
                f"{x:.2f}" for x in section.get("load_before", data["machine"]["load_before"])
            )
            + f"), transform: {section.get('core', _BEFORE_CORE)}. "
            f"wrk -t1 -c{section.get('connections', s['connections'])}, "
            f"{s['duration_s']} s per run after a "
            f"{s['warmup_s']} s warm-up, {s['rounds']} rounds in alternation, each run "
            "started once the process under test is idle (no backlog of the previous run)"
            + (f"; the wrk cells took {seconds:.0f} s" if seconds is not None else "")
            + (
                f" and the micro cell {section['micro_seconds']:.0f} s"
                if "micro_seconds" in section
                else ""
            )
            + "."
        ),
        "",
        (
            f"- Bundle: `bench/fhir.py` seed {bundle.get('seed', '—')}, "
            f"type {bundle.get('bundle_type')}, {bundle.get('bytes', 0):,} bytes pretty-printed, "
            f"{sum(resources.values())} resources ("
            + ", ".join(f"{n} {k}" for k, n in sorted(resources.items(), key=lambda kv: -kv[1]))
            + "), served by the portal as `application/fhir+json` at one path."
        ),
        (
            "- PHI tokens: "
            + ", ".join(f"{n} {k}" for k, n in tokens.items())
            + " (SSN by the example config's FHIR path selector, `member_id` and `visit_reason` "
            "by its key selectors); phi-proxy runs the example config's `fields:` section "
            "(four selectors), one worker, audit on."
        ),
        (
            "- `x pass` compares req/s; `CPU x pass` compares CPU µs per request of the process "
            "under test (phi-proxy vs the bare aiohttp pass-through, both one process)."
        ),
        "",
        "| target | bar | measured | met |",
        "|---|---|---|---|",
    ]
    for label, bar, value, ok in fhir_targets(data):
        out.append(
            f"| {label} | {bar} | {value} | {'—' if ok is None else ('yes' if ok else '**no**')} |"
        )
    out += [
        "",
        (
            "| config | req/s | x pass | CPU µs/req | CPU x pass | p50 ms | p99 ms | RSS MiB "
            "| errors |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for config in ORDER:
        r = idx.get((FHIR_GROUP, config))
        if r is None:
            continue
        out.append(
            f"| {config} | {r['rps']:.0f} | {_fmt(_ratio(idx, FHIR_GROUP, config, 'pass'))} | "
            f"{_fmt(r['cpu_us_per_req'], 0)} | {_fmt(_cpu_x(idx, FHIR_GROUP, config, 'pass'))} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['rss_mb']:.0f} | {r['errors']} |"
        )
    if micro:
        out += [
            "",
            (
                "Micro (`micro.run_fhir`: `transform_response` alone on the same-shaped bundle, "
                "CPU µs per bundle; warm = same bundle again, cold = fresh tokens each time):"
            ),
            "",
            "| measure | value |",
            "|---|---:|",
        ]
        out += [f"| {k} | {v:,.{1 if k.endswith('_us') else 0}f} |" for k, v in micro.items()]
        kept = micro.get("grantee_decimal_spellings_kept")
        total = micro.get("decimal_spellings_in")
        if kept is not None and total:
            out += [
                "",
                (
                    f"Decimal spellings: of the bundle's {total:.0f} special spellings "
                    f"({', '.join(f'`{x}`' for x in bundle.get('decimal_spellings', {}))}), "
                    f"{kept:.0f} come out of the transform as written"
                    + (
                        ": only the decided values are rewritten, every other byte comes back "
                        "as it came (FHIR reads a decimal's spelling as its precision)."
                        if kept == total
                        else ": a changed body was re-serialized by orjson, which prints "
                        "`8E+1` as `80.0`, `1.1E+2` as `110.0` and `98.60` as `98.6` (FHIR "
                        "reads a decimal's spelling as its precision)."
                    )
                ),
            ]
    out.append("")
    return out


def render(data: dict) -> str:
    m = data["machine"]
    s = data["settings"]
    idx = _index(data)
    out = [
        "# phi-proxy benchmark",
        "",
        "Generated by `make bench` (bench/run.py); raw figures in `bench/results/latest.json`.",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), Linux {m['kernel']}, Python {m['python']}",
        "- Packages: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        f"- Tools: {m['wrk']}; {m['nginx']}",
        f"- Transform core: {m.get('core', _BEFORE_CORE)}",
        f"- Commit: {m['commit']}; load average before the run: "
        + ", ".join(f"{x:.2f}" for x in m["load_before"]),
        (
            f"- Load: wrk -t1 -c{s['connections']}, {s['duration_s']} s per run after a "
            f"{s['warmup_s']} s warm-up, {s['rounds']} rounds in alternation (A B C … A B C …); "
            f"medians over rounds. Whole run: {data['seconds']:.0f} s."
        ),
        (
            "- Everything (wrk, nginx portal, proxies) shares the same cores, and other jobs may "
            "run on the machine at the same time: alternation spreads that drift over all "
            "configurations, so compare ratios within one run, not absolute numbers across runs."
        ),
        (
            "- CPU µs/request: user+system time of the process(es) under test from /proc over "
            "the run, divided by requests. `direct` and `nginx` count the nginx worker, which "
            "also serves the pages (one nginx process holds both server blocks)."
        ),
    ]
    out += [f"- Note: {n}" for n in data.get("notes", [])]
    out += ["", "## Targets", "", "| target | bar | measured | met |", "|---|---|---|---|"]
    for label, bar, value, ok in targets(data):
        out.append(
            f"| {label} | {bar} | {value} | {'—' if ok is None else ('yes' if ok else '**no**')} |"
        )
    groups = [g for g in dict.fromkeys(r["group"] for r in data["results"]) if g != FHIR_GROUP]
    out += ["", "## Results", ""]
    for group in groups:
        size = (
            data["page_bytes"].get(group.split("/")[-1], None)
            if group.startswith("patients")
            else None
        )
        title = f"### {group}" + (f" ({size / 1024:.1f} KiB per page)" if size else "")
        out += [
            title,
            "",
            (
                "| config | req/s | x pass | x direct | p50 ms | p99 ms | CPU µs/req | RSS MiB "
                "| errors |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for config in ORDER:
            r = idx.get((group, config))
            if r is None:
                continue
            base = "phi-decrypt" if config == "phi-decrypt-x2" else "pass"
            out.append(
                f"| {config} | {r['rps']:.0f} | {_fmt(_ratio(idx, group, config, 'pass'))} | "
                f"{_fmt(_ratio(idx, group, config, 'direct'))} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | "
                f"{_fmt(r['cpu_us_per_req'], 0)} | {r['rss_mb']:.0f} | {r['errors']} |"
            )
            if config == "phi-decrypt-x2":
                out[-1] += f" (x 1 worker: {_fmt(_ratio(idx, group, config, base))})"
        out.append("")
    out += fhir_section(data)
    micro = data.get("micro", {})
    if micro:
        out += ["## Micro-benchmark (bench/micro.py, µs)", "", "| measure | µs |", "|---|---:|"]
        out += [f"| {k} | {v:.3f} |" for k, v in micro.items()]
        out.append("")
    if data.get("audit_scale"):
        import audit_scale  # noqa: PLC0415 - imports the proxy's audit code only when shown

        out += audit_scale.render(data["audit_scale"])
    analysis = BENCH / "ANALYSIS.md"
    if analysis.exists():
        out += [analysis.read_text().rstrip(), ""]
    return "\n".join(out)


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else BENCH / "results" / "latest.json"
    (BENCH / "REPORT.md").write_text(render(json.loads(source.read_text())))

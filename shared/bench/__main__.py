"""`make bench` (python -m shared.bench [render] [campaign] [cost] [--out FILE]): prints a
table and writes the figures as JSON to FILE (`make bench` passes $BENCH_OUT, default
var/bench.json). Benchmarks, not timed tests: the
machine is shared and noisy, so ratios are measured side by side in one run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.bench import cost, cost_cases, render_bench, simulation

GOALS = {
    "render_per_s": 5000, "render_vs_naive": 4.0, "smtp_per_s": 1000, "null_per_s": 3000,
    "peak_rss_mb": 300, "usd_per_million": 0.25, "fault_rate_ratio": 0.5,
}  # fmt: skip
# Issue 13's cost cases -> the campaign runs below that measure them.
COST_RUNS = {"whole_list": "null_plain", "whole_list_ab": "null",
             "segment_10pct": "null_segment", "segment_10pct_ab": "null_segment_ab"}  # fmt: skip
COST_LABELS = {"whole_list": "whole", "whole_list_ab": "whole A/B", "segment_10pct": "10 %",
               "segment_10pct_ab": "10 % A/B"}  # fmt: skip
FAULT_AUDIENCE = 5_000  # the fault run and its fault-free twin: the same plain SMTP campaign


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("parts", nargs="*", default=["render", "campaign", "cost"])
    parser.add_argument("--audience", type=int, default=100_000)
    parser.add_argument("--small-audience", type=int, default=20_000)
    parser.add_argument("--large-audience", type=int, default=200_000,
                        help="a third A/B run for the memory curve; 0 skips it")  # fmt: skip
    parser.add_argument("--memory-runs", type=int, default=3,
                        help="A/B runs per audience (small and main) whose median peak memory "
                        "makes the curve; single runs differ by several MB")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("var/bench.json"))
    args = parser.parse_args()
    figures: dict[str, Any] = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}",
        "goals": GOALS,
    }
    console = Console()
    if "render" in args.parts:
        with console.status("render benchmark ..."):
            figures["render"] = render_bench.run()
    if "campaign" in args.parts or "cost" in args.parts:
        figures["campaign"] = _campaigns(
            console, args.audience, args.small_audience, args.large_audience
        )
        repeats = _repeat_runs(console, [args.small_audience, args.audience], args.memory_runs)
        peaks = _peak_rss_runs([*figures["campaign"].values(), *repeats])
        figures["peak_rss_by_audience_mb"] = _memory_curve(peaks)
        figures["peak_rss_runs_mb"] = {str(size): values for size, values in peaks.items()}
        figures["repeat_runs"] = repeats
        runs = figures["campaign"]
        figures["cost"] = cost.per_million(runs["null"]["operations"], runs["null"]["delivered"])
        figures["cost_without_ab_test"] = cost.per_million(
            runs["null_plain"]["operations"], runs["null_plain"]["delivered"]
        )
        figures["cost_cases"] = {case: cost_cases.priced(runs[run])
                                 for case, run in COST_RUNS.items()}  # fmt: skip
        # Per-stage costs for the fan-out simulation (shared/bench/simulation.py).
        figures["stage_costs"] = simulation.stage_costs(
            runs["null_plain"]["operations"], runs["null_plain"]["delivered"]
        )
        for run in runs.values():
            run.pop("operations", None)
        figures["smtp_sink_alone_per_s"] = runs.pop("sink")["smtp_sink_alone_per_s"]
        figures["fault_run"] = _fault_figures(runs.pop("smtp_fault_free"), runs.pop("smtp_faults"))
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    console.print(_table(figures))
    if "cost_cases" in figures:
        console.print(cost_table(figures["cost_cases"]))
    console.print(f"Figures written to {out}")


def _campaigns(console: Console, audience: int, small: int, large: int) -> dict[str, Any]:
    """Each run in its own process, so each peak memory figure belongs to that run alone."""
    plans = [
        ("null", audience, "null", "ab"),
        ("smtp", audience, "smtp", "ab"),
        ("null_small", small, "null", "ab"),
        ("null_plain", audience, "null", "plain"),
        ("null_segment", audience, "null", "plain segment"),
        ("null_segment_ab", audience, "null", "ab segment"),
        ("smtp_fault_free", FAULT_AUDIENCE, "smtp", "plain"),
        ("smtp_faults", FAULT_AUDIENCE, "smtp", "plain faults"),
    ]
    if large:
        plans.append(("null_large", large, "null", "ab"))
    runs: dict[str, Any] = {}
    with console.status("SMTP sink alone ..."):
        runs["sink"] = _subprocess_json(["sink"])
    for name, size, esp, kind in plans:
        with console.status(f"campaign ({kind}) to {size:,} subscribers, provider {esp} ..."):
            runs[name] = _subprocess_json([str(size), esp, *kind.split()])
    return runs


def _fault_figures(fault_free: dict[str, Any], faulty: dict[str, Any]) -> dict[str, Any]:
    """The same campaign without and with faults (451 to 20 % of RCPTs, 421 to 2 % of
    connections), and the ratio of their send rates."""
    for run in (fault_free, faulty):
        run.pop("operations", None)
    ratio = round(faulty["emails_per_s"] / max(1, fault_free["emails_per_s"]), 2)
    return {"fault_free": fault_free, "faults": faulty, "rate_ratio": ratio}


def _repeat_runs(console: Console, sizes: list[int], runs: int) -> list[dict[str, Any]]:
    """More A/B runs with the null provider, sizes taking turns, until each size has `runs`
    (with the one `_campaigns` made): for the memory curve's medians."""
    results = []
    for turn in range(2, runs + 1):
        for size in sizes:
            with console.status(f"memory run {turn} of {runs}: A/B to {size:,} subscribers ..."):
                run = _subprocess_json([str(size), "null", "ab"])
            run.pop("operations", None)
            results.append(run)
    return results


def _peak_rss_runs(runs: list[dict[str, Any]]) -> dict[int, list[float]]:
    """Audience -> the peak RSS of the largest pipeline process of each null A/B run."""
    peaks: dict[int, list[float]] = {}
    for run in runs:
        if run.get("provider") == "null" and run.get("ab_test") and not run.get("segment"):
            peaks.setdefault(run["audience"], []).append(max(run["peak_rss_mb"].values()))
    return dict(sorted(peaks.items()))


def _memory_curve(peaks: dict[int, list[float]]) -> dict[str, float]:
    """Audience -> the median of its runs' peaks."""
    return {str(size): round(statistics.median(values), 1) for size, values in peaks.items()}


def _subprocess_json(args: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "shared.bench.campaign_bench", *args]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def _table(figures: dict[str, Any]) -> Table:
    table = Table(title="Mailpipe benchmark", show_lines=False)
    for column in ("figure", "measured", "goal"):
        table.add_column(column)
    render = figures.get("render")
    if render:
        table.add_row("render: MIME messages/s, one core", f"{render['messages_per_s']:,}",
                      f">= {GOALS['render_per_s']:,}")  # fmt: skip
        table.add_row("  bare Jinja2 render/s (ceiling)", f"{render['bare_jinja_per_s']:,}", "")
        table.add_row("  naive Jinja2 + EmailMessage/s", f"{render['naive_per_s']:,}", "")
        table.add_row("  vs naive", f"{render['vs_naive']}x", f">= {GOALS['render_vs_naive']}x")
        for kind, label in (("rsa", "RSA-2048"), ("ed25519", "Ed25519")):
            table.add_row(f"  render + DKIM {label}/s", f"{render[f'render_sign_{kind}_per_s']:,}",
                          f"+{render[f'sign_{kind}_ms']} ms/message")  # fmt: skip
    for name, run in figures.get("campaign", {}).items():
        # The throughput goals are the 100,000-subscriber A/B runs'; the others are comparisons.
        goal = GOALS["smtp_per_s"] if run["provider"] == "smtp" else GOALS["null_per_s"]
        rss = max(run["peak_rss_mb"].values())
        kind = "A/B" if run["ab_test"] else "plain"
        kind += " 10 % segment of a" if run.get("segment") else ""
        table.add_row(f"{kind} campaign {run['audience']:,} via {run['provider']}: emails/s",
                      f"{run['emails_per_s']:,}",
                      f">= {goal:,}" if name in ("null", "smtp") else "")  # fmt: skip
        table.add_row("  duplicates / missing", f"{run['duplicates']} / {run['missing']}", "0 / 0")
        table.add_row("  peak RSS, largest pipeline process (MB)", f"{rss:.0f}",
                      f"< {GOALS['peak_rss_mb']}" if name != "smtp" else "")  # fmt: skip
        table.add_row("  peak RSS, warehouse process: BigQuery's stand-in (MB)",
                      f"{run.get('warehouse_peak_rss_mb', 0):.0f}", "")  # fmt: skip
    curve = figures.get("peak_rss_by_audience_mb")
    if curve:
        table.add_row("peak RSS by audience, A/B via null, median (MB)",
                      " / ".join(f"{int(a) // 1000}k: {mb:.0f}" for a, mb in curve.items()),
                      "flat")  # fmt: skip
        spread = figures.get("peak_rss_runs_mb", {})
        table.add_row("  each run (MB)", "; ".join(
            f"{int(a) // 1000}k: " + " ".join(f"{mb:.0f}" for mb in runs)
            for a, runs in spread.items()), "")  # fmt: skip
    repeats = figures.get("repeat_runs", [])
    if repeats:
        wrong = sum(run["duplicates"] + run["missing"] for run in repeats)
        table.add_row("  duplicates + missing, those extra runs", f"{wrong}", "0")
    fault_run = figures.get("fault_run")
    if fault_run:
        free, faulty = fault_run["fault_free"], fault_run["faults"]
        f = faulty.get("faults", {})
        table.add_row(f"plain campaign {free['audience']:,} via SMTP, no faults: emails/s",
                      f"{free['emails_per_s']:,}", "")  # fmt: skip
        table.add_row(
            f"  the same with faults ({f.get('rcpts_deferred_451', 0):,} RCPTs answered 451, "
            f"{f.get('connections_refused_421', 0)} of {f.get('connections', 0)} connections "
            "421): emails/s", f"{faulty['emails_per_s']:,}", "",
        )  # fmt: skip
        table.add_row("  fault run / fault-free send rate", f"{fault_run['rate_ratio']:.2f}",
                      f">= {GOALS['fault_rate_ratio']}")  # fmt: skip
        table.add_row("  duplicates / missing with faults",
                      f"{faulty['duplicates']} / {faulty['missing']}", "0 / 0")  # fmt: skip
    if "smtp_sink_alone_per_s" in figures:
        table.add_row("  SMTP sink alone (4 clients): messages/s",
                      f"{figures['smtp_sink_alone_per_s']:,}", "")  # fmt: skip
    if "cost" in figures:
        table.add_row("cost per million emails, A/B campaign (USD)",
                      f"{figures['cost']['usd_per_million']:.3f}",
                      f"<= {GOALS['usd_per_million']:.2f}")  # fmt: skip
        table.add_row("  the same without an A/B test (USD)",
                      f"{figures['cost_without_ab_test']['usd_per_million']:.3f}", "")  # fmt: skip
    return table


def cost_table(cases: dict[str, Any]) -> Table:
    """USD per million emails by component (rows) for each of issue 13's cases (columns)."""
    table = Table(title="Cost per million emails (USD), counted operations x list prices")
    table.add_column("component", no_wrap=True)
    for name in cases:
        table.add_column(COST_LABELS.get(name, name), justify="right")
    table.add_row("emails of list", *(f"{c['emails']:,} of {c['list_size']:,}"
                                      for c in cases.values()))  # fmt: skip
    components = next(iter(cases.values()))["components_usd_per_million"]
    for component in components:
        table.add_row(component, *(f"{c['components_usd_per_million'][component]:.4f}"
                                   for c in cases.values()))  # fmt: skip
    table.add_row("total", *(f"{c['usd_per_million']:.3f}" for c in cases.values()))
    table.add_row("goal", *(f"<= {GOALS['usd_per_million']:.2f}" for _ in cases))
    return table


if __name__ == "__main__":
    main()

"""`make bench-scale`: the figures of issue 13 that this machine can measure.

- `import`: `--rows` (default 1,000,000) generated rows, one in a hundred invalid and one in two
  hundred a repeated address, through the real pipeline (blob store, scan, one bus message per
  chunk through the import function, batched writes to the SQLite document store) as
  `mailpipe subscribers import` runs it locally: MAILPIPE_IMPORT_PARALLEL_CHUNKS chunks in
  flight, each worked by an import worker process of its own.
- `campaign`: a whole-list campaign to `--recipients` (default 1,000,000) subscribers, those the
  import created plus a top-up import to the round number, through the whole local pipeline
  (campaign_bench.run: runner, bus, dispatch, render, send via the null provider, ledger), in a
  process of its own so that its peak memory is the campaign's. Every recipient must end with
  exactly one outcome: duplicates, missing and dead letters are counted.
- `cost`: shared/bench/cost_cases.py.

Writes `$BENCH_OUT` (default var/bench-scale.json): one section per part.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shared import bootstrap
from shared.bench import simulation
from shared.bench.cost_cases import cost_figures
from shared.bootstrap import Container
from shared.metering import OperationMeter
from shared.settings import Settings

GOALS = {
    "import_rows_per_s": 10_000,
    "campaign_peak_rss_mb": 150,
    "campaign_dead_letters": 0,
    "campaign_duplicates": 0,
    "campaign_missing": 0,
}


def sample_file(path: Path, rows: int) -> int:
    """Write a Mailchimp-shaped file of `rows` rows; returns how many are invalid."""
    invalid = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write('"Email Address","First Name","TAGS","Plan"\r\n')
        for i in range(rows):
            if i % 100 == 99:
                invalid += 1
                out.write(f'"not-an-address-{i}","Bad","",""\r\n')
                continue
            n = i - 1 if i % 200 == 1 else i  # a repeated address now and then
            out.write(f'"user{n}@example{n % 97}.com","User {n}","""vip"",""beta""","pro"\r\n')
    return invalid


def run_import(data_dir: Path, file: Path, processes: int = 2) -> dict[str, Any]:
    from shared.runner.import_worker import start_import_worker

    settings = Settings(data_dir=data_dir, template_root=Path("templates"), log_level="WARNING",
                        import_parallel_chunks=processes)  # fmt: skip
    container = Container(settings, meter=OperationMeter())
    bootstrap.install(container)
    started, cpu = time.perf_counter(), _cpu_seconds()
    job = container.imports.upload(file.read_bytes(), file.name)
    container.imports.start(job.id, confirmed_consent=True)
    worker = start_import_worker(container.bus, 0.005, settings, processes)
    try:
        while container.imports.status(job.id).status not in ("done", "refused"):
            time.sleep(0.1)
    finally:
        worker.stop(timeout=60)
    elapsed, cpu = time.perf_counter() - started, _cpu_seconds() - cpu
    done = container.imports.status(job.id)
    return {
        "status": done.status,
        "rows": done.rows_total,
        "seconds": round(elapsed, 1),
        "rows_per_s": round(done.rows_total / elapsed),
        "worker_processes": processes,
        "cpu_seconds": round(cpu, 1),
        "rows_per_cpu_s": round(done.rows_total / cpu),
        "peak_rss_mb": max(_peak_rss_mb().values()),
        "peak_rss_by_process_mb": _peak_rss_mb(),
        "created": done.counts.get("created", 0),
        "rejected": done.counts.get("rejected", 0),
        "duplicates": done.counts.get("duplicates", 0),
        "chunks": len(done.chunks),
    }


def _cpu_seconds() -> float:
    """CPU of this process and of its finished children (the import worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)  # fmt: skip
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _peak_rss_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"bench_process": round(own, 1), "largest_import_worker": round(children, 1)}


def import_figures(tmp: Path, rows: int) -> dict[str, Any]:
    file = tmp / "members_export.csv"
    invalid = sample_file(file, rows)
    figures = {**run_import(tmp / "var", file), "invalid_rows": invalid}
    file.unlink()
    return figures


def campaign_figures(tmp: Path, recipients: int, imported: int) -> dict[str, Any]:
    """The campaign to exactly `recipients` subscribers: to the `imported` ones (confirmed)
    a top-up import of new addresses to the round number, then the campaign in a process of
    its own."""
    data_dir = tmp / "var"
    missing = recipients - imported
    if missing > 0:
        top_up = tmp / "top_up.csv"
        top_up.write_text("email\n" + "".join(f"top{i}@example.net\n" for i in range(missing)))
        run_import(data_dir, top_up)
    # The import's mirror rows into the warehouse first, in a process of its own: as setup it
    # would load DuckDB and a million rows' worth of merges into the campaign's process, whose
    # peak RSS is what the campaign is measured by.
    module = [sys.executable, "-m", "shared.bench.scale_bench"]
    subprocess.run([*module, "--mirror-in", str(data_dir)], check=True, capture_output=True)
    command = [*module, "--campaign-in", str(data_dir), "--recipients", str(recipients)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "recipients": result["audience"],
        "emails_per_s": result["emails_per_s"],
        "seconds": result["seconds"],
        "dead_letters": result["dead_letters"],
        "duplicates": result["duplicates"],
        "missing": result["missing"],
        "delivered": result["delivered"],
        "peak_rss_mb": max(result["peak_rss_mb"].values()),
        "peak_rss_by_process_mb": result["peak_rss_mb"],
        "warehouse_process_peak_rss_mb": result["warehouse_peak_rss_mb"],
        "provider": result["provider"],
        "worker_processes": result["worker_processes"],
    }


def deliver_mirror(data_dir: Path) -> None:
    """In a process of its own: the subscriber mirror rows waiting on the bus, warehoused."""
    from shared.bench import campaign_bench

    campaign_bench.deliver_mirror(campaign_bench.setup_container(data_dir))


def run_campaign(data_dir: Path, recipients: int) -> None:
    """In the campaign's own process: campaign_bench's run to the imported subscribers."""
    from shared.bench import campaign_bench

    result = campaign_bench.run(recipients, "null", ab=False, timeout_s=1800, data_dir=data_dir)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-scale", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--recipients", type=int, default=1_000_000, help="0: no campaign")
    parser.add_argument("--out", type=Path, default=Path("var/bench-scale.json"))
    parser.add_argument("--campaign-in", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mirror-in", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mirror_in:
        deliver_mirror(args.mirror_in)
        return
    if args.campaign_in:
        run_campaign(args.campaign_in, args.recipients)
        return
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="mailpipe-bench-scale-") as name:
        tmp = Path(name)
        imported = figures["import"] = import_figures(tmp, args.rows)
        if args.recipients:  # 0: the import alone
            figures["campaign"] = campaign_figures(tmp, args.recipients, imported["created"])
    figures["cost"] = cost_figures()  # issue 13's four cost cases (shared/bench/cost_cases.py)
    figures["simulation"] = simulation.simulation_figures()  # 10 M recipients in GCP, modelled
    figures["goals"] = GOALS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

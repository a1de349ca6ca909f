"""`make bench-scale`: the figures of issue 13 that this machine can measure.

Today: an import of `--rows` (default 1,000,000) generated rows, one in a hundred invalid and
one in two hundred a repeated address, through the real pipeline (blob store, scan, one bus
message per chunk through the import function, batched writes to the SQLite document store),
in this process as `mailpipe subscribers import` runs it locally. Writes `$BENCH_OUT`
(default var/bench-scale.json) with `import.rows`, `import.rows_per_s`, `import.peak_rss_mb`,
`import.rejected`, and the CPU seconds it took.
"""

from __future__ import annotations

import argparse
import json
import resource
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

GOALS = {"import_rows_per_s": 10_000}


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


def run_import(data_dir: Path, file: Path) -> dict[str, Any]:
    from shared.runner.import_worker import start_import_worker

    settings = Settings(data_dir=data_dir, template_root=Path("templates"))
    container = Container(settings, meter=OperationMeter())
    bootstrap.install(container)
    started, cpu = time.perf_counter(), time.process_time()
    job = container.imports.upload(file.read_bytes(), file.name)
    container.imports.start(job.id, confirmed_consent=True)
    worker = start_import_worker(container.bus, poll_interval_s=0.005)
    try:
        while container.imports.status(job.id).status not in ("done", "refused"):
            time.sleep(0.1)
    finally:
        worker.stop(timeout=60)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    done = container.imports.status(job.id)
    writes = container.meter.snapshot().get("firestore.write")
    return {
        "status": done.status,
        "rows": done.rows_total,
        "seconds": round(elapsed, 1),
        "rows_per_s": round(done.rows_total / elapsed),
        "cpu_seconds": round(cpu, 1),
        "rows_per_cpu_s": round(done.rows_total / cpu),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "created": done.counts.get("created", 0),
        "rejected": done.counts.get("rejected", 0),
        "duplicates": done.counts.get("duplicates", 0),
        "chunks": len(done.chunks),
        "firestore_writes": writes.operations if writes else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-scale", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=Path("var/bench-scale.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailpipe-bench-scale-") as tmp:
        file = Path(tmp) / "members_export.csv"
        invalid = sample_file(file, args.rows)
        figures = {"import": {**run_import(Path(tmp) / "var", file), "invalid_rows": invalid}}
    figures["cost"] = cost_figures()  # issue 13's four cost cases (shared/bench/cost_cases.py)
    figures["simulation"] = simulation.simulation_figures()  # 10 M recipients in GCP, modelled
    figures["goals"] = GOALS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()

"""`make bench-scale` end to end at a small size: the import through worker processes, the
top-up to the round number, and the campaign in its own process, with the keys issue 13 names
and every recipient accounted for (the full size is the benchmark's, not a test's)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from shared.topology import REPO_ROOT


@pytest.mark.slow
def test_bench_scale_writes_the_import_and_campaign_keys(tmp_path):
    out = tmp_path / "bench-scale.json"
    command = [sys.executable, "-m", "shared.bench.scale_bench", "--rows", "1200",
               "--recipients", "1500", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO_ROOT, capture_output=True, timeout=240)
    figures = json.loads(out.read_text())
    imported, campaign = figures["import"], figures["campaign"]
    assert imported["rows"] == 1200 and imported["rejected"] == 12  # one in a hundred
    assert imported["created"] == 1200 - 12 - 6 and imported["duplicates"] == 6
    assert imported["rows_per_s"] > 0 and imported["peak_rss_mb"] > 0
    assert campaign["recipients"] == 1500 and campaign["delivered"] == 1500
    assert (campaign["dead_letters"], campaign["duplicates"], campaign["missing"]) == (0, 0, 0)
    assert campaign["emails_per_s"] > 0 and 0 < campaign["peak_rss_mb"] < 1000

"""`make bench-scale` end to end at a small size: the import through worker processes, the
top-up to the round number, and the campaign in its own process, every recipient accounted
for (the full size is the benchmark's, not a test's)."""

from __future__ import annotations

import pytest

from shared import bootstrap
from shared.bench import scale_bench
from shared.topology import REPO_ROOT


@pytest.mark.slow
def test_bench_scale_imports_and_sends_to_every_recipient_once(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)  # as `make bench-scale` runs it (the templates)
    try:
        imported = scale_bench.import_figures(tmp_path, 1200)
        campaign = scale_bench.campaign_figures(tmp_path, 1500, imported["created"])
    finally:
        bootstrap.install(None)
    assert imported["rows"] == 1200 and imported["rejected"] == 12  # one in a hundred
    assert imported["created"] == 1200 - 12 - 6 and imported["duplicates"] == 6
    assert imported["rows_per_s"] > 0 and imported["peak_rss_mb"] > 0
    assert campaign["recipients"] == 1500 and campaign["delivered"] == 1500
    assert (campaign["dead_letters"], campaign["duplicates"], campaign["missing"]) == (0, 0, 0)
    assert campaign["emails_per_s"] > 0 and 0 < campaign["peak_rss_mb"] < 1000

"""The cost of a million emails in issue 13's four cases: the whole list and a 10 % segment of
it, each with and without an A/B test. Each case is one campaign through the whole local
pipeline (campaign_bench, in a process of its own), its counted operations priced by cost.py.

A case is measured on a list of `list_size` subscribers and reported per million emails sent;
the segment case divides by the segment's emails everything the campaign cost, including
whatever its dispatch read of the whole list, so a cost that grows with the list and not the
audience shows here ten times over. Per-campaign fixed costs are spread over fewer emails than
at a million, so the figures err high."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from shared.bench import cost

LIST_SIZE = 50_000
# name -> campaign_bench flags
CASES = {
    "whole_list": "plain",
    "whole_list_ab": "ab",
    "segment_10pct": "plain segment",
    "segment_10pct_ab": "ab segment",
}


def run_case(list_size: int, flags: str) -> dict[str, Any]:
    """One campaign in a fresh process (null provider), as campaign_bench reports it."""
    command = [sys.executable, "-m", "shared.bench.campaign_bench", str(list_size), "null",
               *flags.split()]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def priced(run: dict[str, Any]) -> dict[str, Any]:
    """A campaign's cost per million emails, its components and where they come from."""
    operations, emails = run["operations"], run["delivered"]
    return {
        **cost.per_million(operations, emails),
        "by_detail": cost.breakdown(operations, emails),
        "list_size": run["audience"],
        "emails": emails,
        "duplicates": run["duplicates"],
        "missing": run["missing"],
    }


def measure(list_size: int = LIST_SIZE) -> dict[str, dict[str, Any]]:
    """Case name -> its priced campaign."""
    return {name: priced(run_case(list_size, flags)) for name, flags in CASES.items()}


def cost_figures(list_size: int = LIST_SIZE) -> dict[str, Any]:
    """`make bench-scale`'s `cost` section: `<case>_usd_per_million` for the four cases, and
    each case's components and counts under `cases`."""
    cases = measure(list_size)
    return {
        **{f"{name}_usd_per_million": case["usd_per_million"] for name, case in cases.items()},
        "list_size": list_size,
        "measured_as": f"one campaign per case on a list of {list_size:,} subscribers (the "
        "segment: one in ten), its counted operations x list prices, per million emails sent",
        "cases": cases,
    }


def main() -> None:
    """python -m shared.bench.cost_cases [LIST_SIZE]: the figures as JSON on stdout."""
    size = int(sys.argv[1]) if len(sys.argv) > 1 else LIST_SIZE
    print(json.dumps(cost_figures(size), indent=2))


if __name__ == "__main__":
    main()

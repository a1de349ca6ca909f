"""The cost of a million emails in issue 13's four cases: the whole list and a 10 % segment of
it, each with and without an A/B test. Each case is one campaign through the whole local
pipeline (campaign_bench, in a process of its own), its counted operations priced by cost.py.

A case is measured on a list of `list_size` subscribers and reported per million emails sent;
the segment case divides by the segment's emails everything the campaign cost, including
whatever its dispatch read of the whole list, so a cost that grows with the list and not the
audience shows here ten times over. Per-campaign fixed costs are spread over fewer emails than
at a million, so the figures err high."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
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


def arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line: LIST_SIZE, a whole number of subscribers (usage and exit 2 else)."""
    parser = argparse.ArgumentParser(
        prog="python -m shared.bench.cost_cases",
        description="The cost per million emails of issue 13's four cases (whole list, 10 % "
        "segment, each with and without an A/B test): one campaign per case through the local "
        "pipeline, its counted operations x list prices, as JSON on stdout.",
    )
    parser.add_argument("list_size", nargs="?", type=_list_size, default=LIST_SIZE,
                        metavar="LIST_SIZE",
                        help=f"subscribers on the list (default {LIST_SIZE:,})")  # fmt: skip
    return parser.parse_args(argv)


def _list_size(text: str) -> int:
    try:
        size = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if size < 10:
        raise argparse.ArgumentTypeError("at least 10 subscribers (the segment is one in ten)")
    return size


def main(argv: Sequence[str] | None = None) -> None:
    """python -m shared.bench.cost_cases [LIST_SIZE]: the figures as JSON on stdout."""
    print(json.dumps(cost_figures(arguments(argv).list_size), indent=2))


if __name__ == "__main__":
    main()

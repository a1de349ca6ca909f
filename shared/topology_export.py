"""Exports shared/topology.py to terraform/topology.auto.tfvars.json, the value of Terraform's
`topology` variable, so Terraform's topics, subscriptions and functions come from the same
declaration as the local runner's.

    python -m shared.topology_export            # rewrite the file
    python -m shared.topology_export --check    # exit 1 when the file is out of date

tests/unit/test_terraform.py checks that the file is up to date and that every `for_each` in
terraform/ iterates over it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared import topology

TFVARS_PATH = topology.REPO_ROOT / "terraform" / "topology.auto.tfvars.json"
GENERATED_BY = "python -m shared.topology_export (from shared/topology.py); do not edit by hand"


def _number(value: float) -> int | float:
    """10.0 -> 10, so Terraform renders "10s" rather than "10.0s"."""
    return int(value) if float(value).is_integer() else value


def _cpu(cpu: float | None) -> str | None:
    """Terraform's available_cpu is a string ("1", "0.5"); null keeps the memory tier's."""
    return None if cpu is None else f"{cpu:g}"


def _function(f: topology.Function) -> dict[str, Any]:
    return {
        "entry_point": f.entry_point,
        "source_dir": f.folder,
        "trigger_topic": f.trigger_topic,
        "route": f.route,
        "public": f.public,
        "memory_mb": f.memory_mb,
        "timeout_s": f.timeout_s,
        "max_instances": f.max_instances,
        "concurrency": f.concurrency,
        "cpu": _cpu(f.cpu),
    }


def _subscription(s: topology.Subscription) -> dict[str, Any]:
    return {
        "topic": s.topic,
        "function": s.function,
        "ack_deadline_s": s.ack_deadline_s,
        "minimum_backoff_s": _number(s.retry.minimum_backoff_s),
        "maximum_backoff_s": _number(s.retry.maximum_backoff_s),
        "max_attempts": s.retry.max_attempts,
        "dead_letter_topic": s.dead_letter_topic,
        "dead_letter_subscription": s.dead_letter_subscription,
    }


def export() -> dict[str, Any]:
    """The tfvars document: {"topology": {generated_by, topics, dead_letter_retention_s,
    functions, subscriptions}}."""
    return {
        "topology": {
            "generated_by": GENERATED_BY,
            "topics": list(topology.TOPICS),
            "dead_letter_retention_s": topology.DEAD_LETTER_RETENTION_S,
            "functions": {f.name: _function(f) for f in topology.FUNCTIONS},
            "subscriptions": {s.name: _subscription(s) for s in topology.SUBSCRIPTIONS},
        }
    }


def render() -> str:
    return json.dumps(export(), indent=2) + "\n"


def is_up_to_date(path: Path = TFVARS_PATH) -> bool:
    return path.is_file() and path.read_text(encoding="utf-8") == render()


def write(path: Path = TFVARS_PATH) -> bool:
    """Rewrite `path` when it differs; True when it changed."""
    if is_up_to_date(path):
        return False
    path.write_text(render(), encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    args = parser.parse_args(argv)
    shown = TFVARS_PATH.relative_to(topology.REPO_ROOT)
    if args.check:
        if is_up_to_date():
            return 0
        print(f"{shown} is out of date: run `python -m shared.topology_export`", file=sys.stderr)
        return 1
    print(f"{shown} {'updated' if write() else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

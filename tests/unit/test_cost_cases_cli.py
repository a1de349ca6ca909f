"""`python -m shared.bench.cost_cases` says how it is used instead of a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.bench.cost_cases import LIST_SIZE, arguments

COMMAND = [sys.executable, "-m", "shared.bench.cost_cases"]


def test_help_prints_usage_and_runs_nothing():
    done = subprocess.run([*COMMAND, "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert done.stdout.startswith("usage: python -m shared.bench.cost_cases")
    assert "LIST_SIZE" in done.stdout and "Traceback" not in done.stderr


def test_a_list_size_that_is_not_a_number_is_refused_with_usage():
    done = subprocess.run([*COMMAND, "lots"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "not a whole number: 'lots'" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("given", "size"), [([], LIST_SIZE), (["200000"], 200_000),
                                             (["200_000"], 200_000)])  # fmt: skip
def test_the_list_size(given, size):
    assert arguments(given).list_size == size


def test_a_list_too_small_for_a_segment_is_refused(capsys):
    with pytest.raises(SystemExit) as stopped:
        arguments(["5"])
    assert stopped.value.code == 2
    assert "at least 10 subscribers" in capsys.readouterr().err

# Mailpipe. `make run` and `make test` work on a fresh machine with only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: help install run test lint typecheck pytest system-packages bench bench-scale bench-http package demo clean

help:
	@echo "make run        start the whole pipeline locally (http://127.0.0.1:$${PORT:-8080})"
	@echo "make test       lint, type-check and run every test"
	@echo "make bench      render / campaign / cost benchmarks -> $${BENCH_OUT:-var/bench.json}"
	@echo "make bench-scale  1 M-row import and 1 M-recipient campaign (issue 13), up to 30 min -> $${BENCH_OUT:-var/bench-scale.json}"
	@echo "make bench-http the runner's memory under a burst of oversized requests"
	@echo "make package    one reproducible zip per Cloud Function in dist/"
	@echo "make demo       fill the local data directory with demo data for the dashboard"

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

run: install
	$(VENV)/bin/mailpipe run

test: lint typecheck pytest

lint: install
	$(VENV)/bin/ruff check shared functions tests
	$(VENV)/bin/ruff format --check shared functions tests

typecheck: install
	$(VENV)/bin/mypy

# Debian packages some tests drive (chromium, spamassassin): installed once, before the
# suites run in parallel, so they never race for dpkg's lock.
system-packages:
	@$(PYTHON) tests/system_packages.py

# The official gcloud Firestore/Pub/Sub emulators (when installed) join the contract suites.
pytest: install system-packages
	$(PY) tests/contract/gcloud_emulators.py -- $(PY) -m pytest -n 2 --dist loadgroup -q

bench: install
	$(PY) -m shared.bench --out "$${BENCH_OUT:-var/bench.json}"

bench-scale: install
	$(PY) -m shared.bench.scale_bench --out "$${BENCH_OUT:-var/bench-scale.json}"

bench-http: install
	$(PY) -m shared.bench.http_limits --out "$${BENCH_HTTP_OUT:-var/bench-http.json}"

package: install
	$(PY) -m shared.packaging dist

demo: install
	$(VENV)/bin/mailpipe demo

clean:
	rm -rf $(VENV) dist .pytest_cache .mypy_cache .ruff_cache

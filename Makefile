# wfu.multisite — the two commands for a fresh machine are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PY := $(VENV)/bin/python
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/$(VENV)/collections
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup demo test unit integration lint sanity molecule bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m tools.demo

# Lint and sanity first, pytest last: its summary line closes the output.  pytest runs PYTEST_WORKERS
# processes (pytest-xdist), each with its own three MariaDB servers, a test file at a time per process (module
# fixtures share a network between a file's tests).
PYTEST_WORKERS ?= 2
test: setup lint sanity molecule
	$(PY) -m pytest tests --durations=30 -n $(PYTEST_WORKERS) --dist loadfile

unit: setup
	$(PY) -m pytest tests/unit

integration: setup
	$(PY) -m pytest tests/integration

lint: setup
	$(VENV)/bin/ansible-lint --offline -q

sanity: setup
	@bash scripts/sanity.sh

molecule: setup
	@bash scripts/molecule.sh

bench: setup
	$(PY) -m benchmarks.search_replace
	$(PY) -m benchmarks.site_pipeline
	$(PY) -m benchmarks.env_migrate_run --sites 30

clean:
	rm -rf tests/output .pytest_cache .hypothesis

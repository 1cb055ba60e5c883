# botwatch: `make run` starts the bot (and the sidecar in front of it); `make test` runs everything.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The vendors' TypeScript types the config checks compile against (package.json, package-lock.json).
NODE_STAMP := node_modules/.package-lock.json

.PHONY: run test lint test-services bench generate loadtest clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python 3.11 (python3.11 or python3)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "need Node.js 20+ and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

# `make run REPLICAS=2`: that many bots, each with its sidecar, behind nginx on one Redis.
run: $(STAMP)
	@if [[ -n "$(REPLICAS)" ]]; then $(PY) scripts/run-replicas.py --replicas $(REPLICAS); else scripts/run.sh; fi

test-services:
	@scripts/ensure-services.sh

# KEDA's and the Prometheus Operator's published schemas (npm) for tests/deploy/test_kubernetes.py.
CRD_SCHEMAS := tests/deploy/schemas/node_modules/.installed
$(CRD_SCHEMAS): tests/deploy/schemas/package-lock.json
	@command -v npm >/dev/null || { echo "need Node.js 20+ and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --prefix tests/deploy/schemas --ignore-scripts --no-audit --no-fund --loglevel=error && touch $@

test: lint $(STAMP) $(NODE_STAMP) $(CRD_SCHEMAS) test-services
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
	rm -rf $(VENV) var .pytest_cache node_modules

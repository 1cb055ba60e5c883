# botwatch: `make run` starts the bot (and the sidecar in front of it); `make test` runs everything.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The vendors' TypeScript types the config checks compile against (package.json, package-lock.json).
NODE_STAMP := node_modules/.package-lock.json

.PHONY: run test test-services bench generate loadtest clean

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "need Python 3.11 (python3.11 or python3)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "need Node.js 20+ and npm (apt-get install nodejs npm)"; exit 1; }
	npm ci --ignore-scripts --no-audit --no-fund --loglevel=error

run: $(STAMP)
	@scripts/run.sh

test-services:
	@scripts/ensure-services.sh

test: $(STAMP) $(NODE_STAMP) test-services
	$(PY) -m pytest $(PYTEST_ARGS)

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

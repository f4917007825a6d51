# thread-weaver developer entry points. Every target installs what it needs itself
# (idempotent, cached): `make run` and `make test` work on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
DATA_DIR ?= .data
PYTEST_ARGS ?=
LINT_PATHS := runtime operator tests bench

.PHONY: run test unit integration e2e e2e-realpods venv services-up services-down controlplane-up \
        controlplane-down image images demo demo-down bench bench-quick soak lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml hack/bootstrap.sh
	hack/bootstrap.sh python "$(PYTHON)" "$(VENV)"
	@touch $(STAMP)

## run: the runtime on its embedded SQLite default, API on $(HOST):$(PORT), data under $(DATA_DIR)/
run: venv
	$(BIN)/threadweaver serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

## test: lint, then the whole suite (unit, integration against MariaDB + dynalite, e2e against a
## local control plane: KWOK suites, then the real-pod suite on the plane's kubelet node in a
## session of its own; Prometheus and promtool built for the monitoring tests)
test: lint
	hack/services.sh up
	hack/controlplane.sh up
	hack/prometheus.sh build
	hack/images.sh build
	hack/controlplane.sh import-images
	$(BIN)/python -m pytest tests --ignore=tests/e2e/realpods $(PYTEST_ARGS)
	$(BIN)/python -m pytest tests/e2e/realpods $(PYTEST_ARGS)

## lint: ruff (lint, format check), mypy (pyproject.toml [tool.mypy]) and the import-linter
## contracts ([tool.importlinter]); all four run, and lint fails if any of them does.
## PYTHONPATH makes lint-imports read this tree's packages whatever the venv has installed.
lint: venv
	@status=0; \
	  (set -x; $(BIN)/ruff check --output-format concise $(LINT_PATHS)) || status=1; \
	  (set -x; $(BIN)/ruff format --check $(LINT_PATHS)) || status=1; \
	  (set -x; $(BIN)/mypy) || status=1; \
	  (set -x; PYTHONPATH=runtime:operator $(BIN)/lint-imports) || status=1; \
	  exit $$status

unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: venv
	hack/services.sh up
	hack/prometheus.sh build
	$(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

e2e: venv
	hack/services.sh up
	hack/controlplane.sh up
	$(BIN)/python -m pytest tests/e2e --ignore=tests/e2e/realpods $(PYTEST_ARGS)

## e2e-realpods: the operator and the runtime on running containers (the plane's real node);
## a pytest session of its own (the KWOK suites run a host operator watching every namespace)
e2e-realpods: venv
	hack/controlplane.sh up
	hack/images.sh build
	hack/controlplane.sh import-images
	$(BIN)/python -m pytest tests/e2e/realpods $(PYTEST_ARGS)

## image: the runtime/operator image from the Dockerfile with podman (no registry), smoke-run
image:
	hack/images.sh build runtime
	hack/images.sh smoke

## images: every image the local cluster's real node runs (runtime, pause, mariadb, dynalite)
images:
	hack/images.sh build
	hack/images.sh smoke

## demo: images, local cluster with a real node, the operator via Helm, the local samples
demo: images
	hack/demo.sh up

## demo-down: remove what `make demo` made (the control plane too)
demo-down:
	hack/demo.sh down

services-up:
	hack/services.sh up
services-down:
	hack/services.sh down
controlplane-up:
	hack/controlplane.sh up
controlplane-down:
	hack/controlplane.sh down

## soak: the long variants of the fault tests (2-minute read-model outage, longer crash runs)
soak: venv
	hack/services.sh up
	THREADWEAVER_TEST_OUTAGE_SECONDS=120 THREADWEAVER_TEST_CRASH_SECONDS=30 \
	  $(BIN)/python -m pytest tests/integration/test_outages_production.py \
	  tests/integration/test_crash_safety_embedded.py tests/integration/test_dynamodb_faults.py \
	  -p no:cacheprovider $(PYTEST_ARGS)

bench: venv
	$(BIN)/python -m bench

bench-quick: venv
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(DATA_DIR) .pytest_cache .ruff_cache .mypy_cache .import_linter_cache

# tierwatch: `make demo` to see it run, `make test` to run the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit integration lint deps venv clean image-test bench previews

deps:
	@scripts/install-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: deps venv
	$(BIN)/python scripts/demo.py

lint: venv
	$(BIN)/ruff check exporter tests scripts bench
	$(BIN)/mypy --strict exporter

# CI runs this: everything, including the container image built and smoke-tested with podman
test: deps venv lint
	TIERWATCH_IMAGE_TEST=1 $(BIN)/pytest -q -ra tests

unit: venv
	$(BIN)/pytest -q tests/unit tests/rules

integration: deps venv
	$(BIN)/pytest -q -ra tests/integration

# Builds the container image with podman, lints it and smoke-tests it against the real
# topology (scripts/image_test.py; installs podman/runc/debootstrap when missing).
image-test: deps venv
	$(BIN)/python scripts/image_test.py

# Renders docs/img/<dashboard uid>.png, a preview of each Grafana dashboard, from a live run
# (topology + tierwatch + workload + Prometheus, about 4 minutes). Needs matplotlib: the
# `previews` extra, installed here.
previews: deps venv
	$(BIN)/pip install -q -e '.[previews]'
	$(BIN)/python scripts/previews.py

# Every figure of docs/benchmarks.md (about 30 min; waits up to 10 min for a quiet machine).
# `bench/run --quick` is the small variant that `make test` runs (tests/bench).
bench: deps venv
	bench/run

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info

# tierwatch: `make demo` to see it run, `make test` to run the whole suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit integration lint deps venv clean

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
	$(BIN)/ruff check exporter tests scripts

test: deps venv lint
	$(BIN)/pytest -q -ra tests

unit: venv
	$(BIN)/pytest -q tests/unit tests/rules

integration: deps venv
	$(BIN)/pytest -q -ra tests/integration

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info

# nomadpaas — `make help` lists the targets. Everything runs from the venv in .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NOMADPAAS_HOME ?= $(CURDIR)/.nomadpaas

.DEFAULT_GOAL := help

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# editable_mode=compat puts the checkout on sys.path with a .pth line instead of an import-hook
# finder, which costs ~5 ms (pathlib and more) at every start of Python: a build task is one.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

bootstrap: $(STAMP) ## Create .venv and install nomadpaas with its dev tools

demo: $(STAMP) ## Start the embedded stack and run the main job on it
	@bash infra/dev/demo.sh

test: $(STAMP) ## Run the test suite
	$(BIN)/pytest -q

check: $(STAMP) ## ruff, mypy --strict on nomadpaas/, import-linter seams
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

fmt: $(STAMP) ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## Run the benchmarks (ratios against same-run baselines)
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean: ## Stop the embedded stack and remove build and test leftovers
	-@test -x $(BIN)/nomadpaas && $(BIN)/nomadpaas down >/dev/null 2>&1 || true
	rm -rf .nomadpaas .pytest_cache .mypy_cache .ruff_cache build *.egg-info .import_linter_cache

.PHONY: help bootstrap demo test check fmt bench clean

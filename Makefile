# udfs: `make help` lists the targets.
.DEFAULT_GOAL := help
VENV ?= .venv
BIN := $(VENV)/bin

help: ## List the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup: ## Install Java, PostgreSQL 15 + PL/Python and the virtualenv (idempotent)
	@bash scripts/setup.sh

demo: setup ## Run the main job (udfs demo) on embedded defaults
	$(BIN)/udfs demo

check: setup ## Lint and format check with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: check ## Run the whole test suite (installs what it needs first)
	$(BIN)/pytest

bench: setup ## Run the benchmarks and write benchmarks/RESULTS.md
	$(BIN)/python -m pip install -q -e ".[spark,postgres,dev,bench]"
	$(BIN)/python benchmarks/run_all.py

.PHONY: help setup demo check test bench

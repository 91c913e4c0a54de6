# The README's two commands: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export GX_ANALYTICS_ENABLED := false
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db
export TOKENIZERS_PARALLELISM := false
# pytest-xdist workers for `make test`: the demo and its tests on one, the other modules on the other (tests/conftest.py);
# 0 runs the suite in one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS)

.PHONY: install demo paper repro ui test test-fast lint format bench data clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build (README: GPU).
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/gtalign data pull

demo: $(STAMP)
	$(BIN)/gtalign demo

paper: $(STAMP)
	$(BIN)/gtalign demo --preset configs/presets/paper.yaml

repro: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/dvc repro

ui: $(STAMP)
	$(BIN)/python -m pipelines.ui --port 3000

test: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(XDIST)

lint: $(STAMP)
	$(BIN)/ruff check gtalign pipelines tests benchmarks
	$(BIN)/ruff format --check gtalign pipelines tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix gtalign pipelines tests benchmarks
	$(BIN)/ruff format gtalign pipelines tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py --output BENCHMARKS.md

clean:
	rm -rf artifacts .dagster mlflow.db

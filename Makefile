# Trading Research Factory — developer entry points.
#   make run    create .venv if missing, install, materialize the whole asset graph, print a summary
#   make test   same install, then lint, `dg check defs` and the test suite
#   make ui     the Dagster web UI on http://127.0.0.1:3000 with DAGSTER_HOME=data/dagster_home
#   make bench  every benchmark suite; figures also in data/bench/latest.json

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/data/dagster_home
# numba's on-disk cache: factory_pipeline/numba_cache.py puts it in .numba_cache/<hash of the
# sources> (a cached kernel must never outlive a change to a kernel it calls).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run test lint format ui bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/factory run

test: install lint
	cd $(CURDIR) && $(BIN)/dg check defs
	$(BIN)/pytest -q -n 2 --durations=15

lint: install
	$(BIN)/ruff check factory_pipeline factory_pipeline_tests scripts
	$(BIN)/ruff format --check factory_pipeline factory_pipeline_tests scripts

format: install
	$(BIN)/ruff check --fix factory_pipeline factory_pipeline_tests scripts
	$(BIN)/ruff format factory_pipeline factory_pipeline_tests scripts

ui: install
	$(BIN)/python -c "from factory_pipeline.cli.pipeline import dagster_home; dagster_home()"
	$(BIN)/dagster dev -m factory_pipeline.definitions -h 127.0.0.1 -p 3000

bench: install
	mkdir -p data/bench
	$(BIN)/factory bench --json data/bench/latest.json

clean:
	rm -rf data/factory.duckdb* data/qdrant data/dagster_home/* data/cache .numba_cache

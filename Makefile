# Two commands a new user needs (see README):
#   make demo   create .venv, simulate data, run a smoke sweep (local Ray + local MLflow)
#   make test   create .venv, run the whole test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
# torch first, so pip never resolves a multi-GB CUDA build on a CPU machine. On these machines
# `torch==2.13.0` is a local CPU wheel; elsewhere set TORCH_INDEX=https://download.pytorch.org/whl/cpu
# (CPU) or .../whl/cu128 (GPU clusters, see cluster/README.md).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin
DEMO_DIR ?= demo

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# Everything the demo writes (simulated data, Ray results, mlruns.db, optuna.db) stays in $(DEMO_DIR).
demo: setup
	mkdir -p $(DEMO_DIR) && cd $(DEMO_DIR) && $(abspath $(BIN))/gsenet search --smoke-test

test: setup
	$(BIN)/pytest -q -ra --timeout 900 --durations=30

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python benchmarks/model_speed.py

clean:
	rm -rf $(DEMO_DIR) .pytest_cache

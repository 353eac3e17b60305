# advml: `make demo` sets everything up and runs the robustness demo; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.advml-installed
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test lint format bench clean

setup: $(STAMP)

# The CPU wheel of torch goes in first: a looser requirement with no torch installed would pull
# several GB of CUDA packages. Where that exact wheel is not at hand, pip's default build is used.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==$(TORCH_VERSION) \
		|| $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

demo: setup
	$(BIN)/advml demo --out runs/demo

test: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/python -m pytest -n 2

lint: setup
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples

format: setup
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASETS ?= ../shared/datasets
export PIXSEEK_DATA_DIR ?= $(CURDIR)/pixseek-data

.PHONY: install demo test lint format bench clean

$(BIN)/pixseek: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/pixseek

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" DATASETS="$(DATASETS)" ./scripts/demo.sh

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ingest

clean:
	rm -rf $(VENV) pixseek-data .pytest_cache .ruff_cache

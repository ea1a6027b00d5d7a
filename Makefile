# Set-up is part of every target: a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATASETS ?= ../shared/datasets
export PIXSEEK_DATA_DIR ?= $(CURDIR)/pixseek-data

.PHONY: install demo test lint format bench clean chromium

$(BIN)/pixseek: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

install: $(BIN)/pixseek

demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" DATASETS="$(DATASETS)" ./scripts/demo.sh

# The browser test drives Debian's chromium (Playwright cannot download a browser offline):
# installed here when missing and running as root; otherwise the test says what to install.
chromium:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: install chromium
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_layers.py
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m bench.ingest

clean:
	rm -rf $(VENV) pixseek-data .pytest_cache .ruff_cache

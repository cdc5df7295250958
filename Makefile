# The two commands: `make run` (the whole platform) and `make test` (the whole suite).
# Both create .venv and install the project on first use; nothing else needs installing.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint fmt clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "ShareHub needs Python 3.11+"'
	@# Debian and Ubuntu ship venv's ensurepip in a package of its own (python3-venv); without it
	@# `python3 -m venv` fails half-way. Say what to install before trying.
	@$(PYTHON) -c 'import ensurepip, venv' 2> /dev/null || { \
	  version=$$($(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])'); \
	  echo "$(PYTHON) $$version cannot create a virtual environment: its ensurepip module is missing." >&2; \
	  echo "On Debian or Ubuntu install it, then run make again:" >&2; \
	  echo "    sudo apt-get install python3-venv    (or python$$version-venv for this Python)" >&2; \
	  exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/sharehub run

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

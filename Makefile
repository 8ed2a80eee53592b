# clue for Python: developer entry points.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint typecheck pytest bench demo clean venv

$(STAMP): pyproject.toml
	@echo "== installing clue and the boutique into $(VENV) (once, about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict clue

pytest: $(STAMP)
	$(BIN)/pytest -q

## make test: the project's test command (virtualenv, install, ruff, mypy --strict, pytest)
test: lint typecheck pytest

## make bench: every benchmark; each goal prints one `goal <name> ... pass|fail` line
bench: $(STAMP)
	$(BIN)/python bench/run.py

## make demo: start the whole boutique with its local trace viewer
demo: $(STAMP)
	$(BIN)/python -m reference_services demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

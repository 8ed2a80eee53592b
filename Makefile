# clue for Python: developer entry points.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the second virtualenv: every direct dependency at the lowest version pyproject.toml admits
LOWEST ?= .venv-lowest
LOWEST_STAMP := $(LOWEST)/.installed

# the library (clue-observability) and the boutique (clue-boutique), each its own distribution
PROJECTS := pyproject.toml packaging/boutique/pyproject.toml
INSTALL := -e '.[dev]' -e ./packaging/boutique

.PHONY: test test-lowest lint typecheck pytest bench probe demo check-dist docs clean venv

$(STAMP): $(PROJECTS)
	@echo "== installing clue and the boutique into $(VENV) (once, about a minute)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip 'uv==0.13.9'
	@# uv, not pip: the OpenTelemetry packages release in lockstep (sdk 1.45.2 wants
	@# semconv 0.66b2, the newest aio-pika instrumentation 0.66b1) and pip's resolver
	@# backtracks for many minutes where uv settles on the newest set that fits at once
	$(BIN)/uv pip install --python $(BIN)/python $(INSTALL)
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy --strict clue reference_services

pytest: $(STAMP)
	$(BIN)/pytest -q

## make test: the project's test command (virtualenv, install, ruff, mypy --strict, pytest)
test: lint typecheck pytest

$(LOWEST_STAMP): $(PROJECTS) $(STAMP)
	@echo "== installing the lowest admitted versions into $(LOWEST)"
	$(BIN)/uv venv --quiet --clear --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct $(INSTALL)
	touch $(LOWEST_STAMP)

## make test-lowest: clue's own tests (not the boutique's) against the lowest admitted versions
test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/pytest -q -p no:cacheprovider tests --ignore=tests/boutique

## make bench: every benchmark; each goal prints one `goal <name> ... pass|fail` line
bench: $(STAMP)
	$(BIN)/python bench/run.py

## make probe: replay issue 12's hostile inputs against a fresh boutique, one held|broke line each
probe: $(STAMP)
	$(BIN)/python bench/probe_boundaries.py

## make demo: start the whole boutique with its local trace viewer
demo: $(STAMP)
	$(BIN)/python -m reference_services demo

## make check-dist: the sdist and both wheels built, checked and installed as users meet them
check-dist: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/test_dist.py

## make docs: the docs site into site/ (strict: a broken link or a missing page fails)
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .pytest_cache .ruff_cache site

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

.PHONY: test test-lowest test-versions lint typecheck pytest bench probe demo check-dist docs clean venv

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

# The boutique's tests and clue's own run side by side, each into its own log printed when
# both are done (the boutique's mostly wait on the processes they start, clue's mostly use
# one core: one after the other they took twice as long); each prints its slowest tests.
pytest: $(STAMP)
	@logs=$$(mktemp -d); \
	$(BIN)/pytest -q --durations=15 tests/boutique >$$logs/boutique.log 2>&1 & boutique=$$!; \
	$(BIN)/pytest -q --durations=15 -p no:cacheprovider tests --ignore=tests/boutique \
	  >$$logs/clue.log 2>&1 & clue=$$!; \
	failed=0; \
	for run in boutique:$$boutique clue:$$clue; do \
	  status=0; wait $${run#*:} || status=$$?; \
	  echo "== pytest: $${run%%:*}'s tests"; cat $$logs/$${run%%:*}.log; \
	  if [ $$status -ne 0 ]; then failed=1; echo "== $${run%%:*}'s tests FAILED (exit $$status)"; fi; \
	done; \
	rm -rf $$logs; exit $$failed

## make test: the project's test command (virtualenv, install, ruff, mypy --strict, pytest)
test: lint typecheck pytest

$(LOWEST_STAMP): $(PROJECTS) $(STAMP)
	@echo "== installing the lowest admitted versions into $(LOWEST)"
	$(BIN)/uv venv --quiet --clear --python $(BIN)/python $(LOWEST)
	$(BIN)/uv pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct $(INSTALL)
	touch $(LOWEST_STAMP)

## make test-lowest: clue's own tests (not the boutique's) against the lowest admitted versions
# (not the browser tests either: what the viewer draws in Chromium depends on no lower bound,
# and the collector's API they read is tested without a browser)
test-lowest: $(LOWEST_STAMP)
	$(LOWEST)/bin/pytest -q -p no:cacheprovider -m "not browser" tests --ignore=tests/boutique \
	  --ignore=tests/test_dist.py

# the other supported Pythons, pyenv's (interpreters cannot be downloaded here)
VERSIONS ?= 3.12 3.13
PYENV ?= $(or $(shell command -v pyenv),$(HOME)/.pyenv/bin/pyenv)
# clue's core: logging, telemetry, the integrations, health, messaging, testing, admin, and
# the distributions built and installed on that Python
CORE_TESTS := tests/test_log_*.py tests/test_telemetry_*.py tests/test_grpc*.py tests/test_asgi.py \
	tests/test_httpx.py tests/test_health_*.py tests/test_messaging.py tests/test_testing.py \
	tests/test_admin*.py tests/test_span_context.py tests/test_dist.py

## make test-versions: clue's core tests on each of VERSIONS, in .venv-3.12/, .venv-3.13/
test-versions: $(STAMP)
	@set -e; for v in $(VERSIONS); do \
	  echo "== Python $$v"; \
	  $(BIN)/uv venv --quiet --allow-existing --python "$$($(PYENV) prefix $$v)/bin/python" $(VENV)-$$v; \
	  $(BIN)/uv pip install --quiet --python $(VENV)-$$v/bin/python $(INSTALL); \
	  $(VENV)-$$v/bin/pytest -q -p no:cacheprovider -m "not browser and not e2e" $(CORE_TESTS); \
	done

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
	rm -rf $(VENV) $(LOWEST) $(VENV)-3.* .mypy_cache .pytest_cache .ruff_cache site

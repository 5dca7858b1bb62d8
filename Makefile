# qcdaemon: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?=
DEMO_USER ?= user@email.com
CONFIG_ARG = $(if $(CONFIG),--config $(CONFIG),)

.PHONY: run test test-all check lint coverage install install-test bootstrap-demo bench bench-10k clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools warns (a block of asterisks) on every editable install of a flat layout; it says nothing here
PIP_INSTALL = PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet

# The daemon, its runtime dependencies and the bundled RawTools (the pyRawTools wheel, run under mono
# when mono is installed); editable, so a `git pull` is picked up.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[rawtools]'
	touch $@

# Plus the test tools and Sage (sagepy).
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP_INSTALL) -e '.[test,rawtools,search]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## Seed the demo (idempotent) and run the daemon on http://127.0.0.1:8000 with the embedded defaults.
run: install bootstrap-demo
	$(BIN)/qcdaemon run $(CONFIG_ARG)

bootstrap-demo: install
	$(BIN)/qcdaemon bootstrap-demo --user $(DEMO_USER) $(CONFIG_ARG)

## Run the whole test suite (per-test timeout, strict markers, warnings as errors: see pyproject.toml).
## Tests run in parallel worker processes (pytest-xdist; TEST_WORKERS=0 runs them in this process).
TEST_WORKERS ?= auto
TEST_ARGS = -n $(TEST_WORKERS) --maxprocesses 4 --dist worksteal
test: install-test
	$(BIN)/python -m pytest $(TEST_ARGS)

## The suite plus the heavy harnesses (`pytest -m heavy`: the 20,000-case fuzz, the 200,000-group
## parse, the kill chaos, the Dask cluster), in one pool so the long ones overlap the rest.
test-all: install-test
	$(BIN)/python -m pytest $(TEST_ARGS) -m 'heavy or not heavy' $(CHECK_ARGS)

## The static checks: ruff, mypy (0 errors on qcdaemon/), the import contracts.
lint: install-test
	$(BIN)/ruff check qcdaemon tests scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

## Everything CI checks: the static checks, then every test (`make test`'s and the heavy ones).
check: lint test-all

## Coverage of the engine and the use cases, measured in-process (the tests that drive them in
## this process; a daemon subprocess's lines are not counted).
coverage: install-test
	$(BIN)/python -m pytest tests/engine tests/server tests/store tests/test_cli_admin.py \
		--cov=qcdaemon.engine --cov=qcdaemon.service --cov-report=term-missing:skip-covered

bench: install-test
	$(BIN)/python -m pip install --quiet pandas
	$(BIN)/python bench/bench.py --runs $(or $(RUNS),1000)
	$(BIN)/python scripts/bench_native.py

bench-10k: install-test
	$(BIN)/python -m pip install --quiet pandas
	$(BIN)/python bench/bench.py --runs 10000 --repeat 10 --base-repeat 1

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

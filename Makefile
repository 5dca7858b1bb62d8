# qcdaemon: the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?=
DEMO_USER ?= user@email.com
CONFIG_ARG = $(if $(CONFIG),--config $(CONFIG),)

.PHONY: run test install install-test bootstrap-demo bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The daemon and its runtime dependencies (editable, so a `git pull` is picked up).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Plus the test tools and the real RawTools (the pyRawTools wheel; it needs mono to run).
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,rawtools]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## Seed the demo (idempotent) and run the daemon on http://127.0.0.1:8000 with the embedded defaults.
run: install bootstrap-demo
	$(BIN)/qcdaemon run $(CONFIG_ARG)

bootstrap-demo: install
	$(BIN)/qcdaemon bootstrap-demo --user $(DEMO_USER) $(CONFIG_ARG)

## Run the whole test suite.
test: install-test
	$(BIN)/python -m pytest

bench: install-test
	$(BIN)/python scripts/bench_native.py
	$(BIN)/python scripts/bench_api.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

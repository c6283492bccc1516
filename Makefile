# make demo / make test: each sets up .venv from nothing (idempotently) first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test test-all lint demo clean

setup:
	@VENV=$(abspath $(VENV)) tools/setup_venv.sh

lint: setup
	$(VENV)/bin/ruff check .

# The default suite, as CI runs it; `slow` covers only training runs, which stay out of it.
test: setup lint
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(PY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/seg-perception demo

clean:
	rm -rf build demo_output .pytest_cache

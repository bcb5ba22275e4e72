# Set-up in two commands: `make demo` and `make test` (each creates .venv and installs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test test-fast bench bench-quick clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# CPU torch first, from the local wheel cache, so no CUDA build is pulled in.
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e ".[test,serve,omop]"
	touch $(STAMP)

demo: install
	$(BIN)/medistill demo --out runs/demo

# The whole suite: the fast tier (unit and property tests), then the end-to-end runs.
test: install
	$(BIN)/python -m pytest -q -m "not slow"
	$(BIN)/python -m pytest -q -m slow --durations=10

# The fast tier alone (under 2 minutes on an idle 2-core machine): run it on every change.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench-quick: install
	$(BIN)/python -m pip install --quiet -e ".[test,serve,omop,bench]"
	$(BIN)/python -m benchmarks --quick

bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,serve,omop,bench]"
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

# Set-up in two commands: `make demo` and `make test` (each creates .venv and installs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0

.PHONY: install demo test bench bench-quick clean

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

test: install
	$(BIN)/python -m pytest -q

bench-quick: install
	$(BIN)/python -m pip install --quiet -e ".[test,serve,omop,bench]"
	$(BIN)/python -m benchmarks --quick

bench: install
	$(BIN)/python -m pip install --quiet -e ".[test,serve,omop,bench]"
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache

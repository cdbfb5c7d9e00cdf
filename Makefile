# Hygie — two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= .hygie-demo
HOST   ?= 127.0.0.1
PORT   ?= 8000
# pytest workers (the CI machine has 2 cores)
JOBS   ?= 2

.PHONY: run test install lint typecheck bench clean-demo help

help:
	@echo "make run    - install, create a demo instance in $(DATA), serve on http://$(HOST):$(PORT)"
	@echo "make test   - install, check PostgreSQL, lint and run the whole test suite"
	@echo "make bench  - run the benchmarks in bench/ (writes bench/results/*.json)"

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/.installed

run: install
	@if [ ! -f $(DATA)/hygie.toml ]; then \
		$(BIN)/hygie init --data-dir $(DATA) && \
		$(BIN)/python -m hygie.demo --data-dir $(DATA); \
	else \
		echo "Using the existing demo instance in $(DATA) (credentials in $(DATA)/demo-client.json)"; \
	fi
	$(BIN)/hygie serve --data-dir $(DATA) --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check src tests $(wildcard bench scripts)
	$(BIN)/mypy

test: install
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/ruff check src tests $(wildcard bench scripts)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile -q -p no:cacheprovider

bench: install
	bash scripts/ensure-postgres.sh
	$(BIN)/python bench/run_all.py

clean-demo:
	rm -rf $(DATA)

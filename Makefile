# Shipflow: `make demo` and `make test` are all a newcomer needs (python3 + the package registry).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.8
STAMP  := $(VENV)/.installed
PORT   ?= 4566
UI_PORT ?= 8080

.PHONY: help venv test lint demo up down status lock sandbox seed bench clean

help:
	@echo "make demo     run the main job end to end on embedded defaults (sets up .venv first)"
	@echo "make test     lint + the whole test suite (what CI runs)"
	@echo "make up       start the local stack in the background: Airflow on $(UI_PORT), AWS sandbox on $(PORT)"
	@echo "make status   is the local stack running and healthy"
	@echo "make down     stop the local stack (runs and history stay in .shipflow/)"
	@echo "make sandbox  serve the AWS sandbox on port $(PORT), seeded with the example services"
	@echo "make bench    run the benchmarks in bench/ (results: docs/benchmarks.md)"
	@echo "make lock     re-resolve requirements.in into requirements.txt"

venv: $(STAMP)

# One resolver, one lock: uv installs exactly requirements.txt, then shipflow itself (editable).
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/pytest

demo: venv
	$(BIN)/shipflow demo

up: venv
	$(BIN)/shipflow up --port $(UI_PORT) --sandbox-port $(PORT)

down: venv
	$(BIN)/shipflow down

status: venv
	$(BIN)/shipflow status

sandbox: venv
	$(BIN)/shipflow sandbox up --port $(PORT) --seed

bench: venv
	$(BIN)/python bench/bench_sandbox.py
	$(BIN)/python bench/bench_aws_calls.py
	$(BIN)/python bench/bench_parse.py
	$(BIN)/python bench/bench_orchestration.py

lock: venv
	$(BIN)/uv pip compile --quiet requirements.in --python-version 3.11 \
	  --python-platform x86_64-unknown-linux-gnu -o requirements.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

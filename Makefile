# `make run`: set up and run the daemon with the example config. `make test`: set up and test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	exec $(BIN)/monitor --config config.example.toml run

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check monitor tests bench
	$(BIN)/mypy monitor

bench: $(VENV)/.installed-test
	$(BIN)/python bench/bench_rules.py
	$(BIN)/python bench/bench_poll.py

clean:
	rm -rf $(VENV) build *.egg-info

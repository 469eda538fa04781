# Two commands: `make lab` opens the course, `make test` runs every test.
# Both create .venv when missing and only reinstall when pyproject.toml or constraints.txt change.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
PIP := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: lab test lint bench slides clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP_RUN): $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	touch $@

$(STAMP_TEST): $(STAMP_RUN)
	$(PIP) -e '.[test]'
	touch $@

lab: $(STAMP_RUN)
	$(BIN)/jupyter lab --notebook-dir=notebooks $(LAB_ARGS)

test: $(STAMP_TEST)
	$(BIN)/ruff check gradcam_edu tests benchmarks
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

lint: $(STAMP_TEST)
	$(BIN)/ruff check gradcam_edu tests benchmarks

bench: $(STAMP_TEST)
	$(BIN)/python benchmarks/bench_capture.py

clean-venv:
	rm -rf $(VENV)

# Two entry points: `make train` runs the documented example, `make test` checks everything
# (ruff, the import-layer contract, mypy --strict, pytest with doctests, and the Sphinx docs
# built with warnings as errors).
# Each creates .venv and installs the project into it on first use (and when pyproject.toml changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: train test lint typecheck pytest docs stress clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,docs,plot,solvers,demo,export,tensorboard,ray]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python examples/train_mnist_sum.py $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy --strict multitask_mnist

pytest: $(STAMP)
	$(BIN)/python -m pytest

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -E -q -b html docs docs/_build/html

# mypy and Sphinx (one core each, about 25 s apiece) run beside pytest, whose tests leave
# a core idle about half the time (waiting on the processes they start): CI stays under
# 12 minutes. The tests hold up beside a busy neighbour (make stress checks that). Only
# pytest prints much (mypy one line, Sphinx -q its warnings), so its output streams as is.
test: lint
	$(MAKE) --no-print-directory -j3 typecheck pytest docs

# The tests that start processes, send signals or race, repeated beside a CPU hog
# (ARGS="--rounds 10", for instance).
stress: $(STAMP)
	$(BIN)/python -m tests.stress $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis stress-reports

# The two commands a fresh clone needs: `make run` (main job) and `make test` (the test suite).
# Both create .venv and install the package on first use, so nothing else has to be done by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: run test test-slow test-all lint format bench-io clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# SEG-Y in, tracked model out: write the default survey as SEG-Y + labels, check it, train and test cnn1d
# on that SEG-Y, log everything to ./mlflow.db (about a minute on 2 CPU cores).
run: $(STAMP)
	$(BIN)/python scripts/make_survey.py
	$(BIN)/python scripts/train.py data=segy data.segy.path=data/synthetic/survey.sgy

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench-io: $(STAMP)
	$(BIN)/python benchmarks/io.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The two commands a fresh clone needs: `make run` (main job) and `make test` (the test suite).
# Both create .venv and install the package on first use, so nothing else has to be done by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false

.PHONY: run loop test test-slow test-all lint format bench-io clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# SEG-Y in, champion out: write the default survey as SEG-Y + labels, check it, train and test the 2D U-Net
# recipe (the best held-out quality inside the 10-minute budget: docs/segmentation.md) on that SEG-Y, log
# everything to ./mlflow.db, export it (ONNX + metadata + reference profile) and register it as the
# challenger, gate it against the champion on the same held-out windows (a refusal, exit 1, keeps the current
# champion), and fail unless a champion exists at the end.
RUN_DATA := data=segy data.segy.path=data/synthetic/survey.sgy
RUN_RECIPE := experiment=unet2d_small
run: $(STAMP)
	$(BIN)/python scripts/make_survey.py
	$(BIN)/python scripts/train.py $(RUN_DATA) $(RUN_RECIPE)
	$(BIN)/python scripts/promote.py $(RUN_DATA) || [ $$? -eq 1 ]
	$(BIN)/python scripts/promote.py action=status

# The closed loop on a tiny survey: champion -> server -> shifted traffic -> drift -> alert -> retrain -> gate ->
# hot reload (scripts/loop.py; README "Alerts and the loop").
loop: $(STAMP)
	$(BIN)/python scripts/loop.py

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

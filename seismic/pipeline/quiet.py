"""Silence the third-party noise this project's own use of its libraries causes, and nothing else.

What a run printed before (issue 18): every Lightning INFO line twice (the ``lightning`` package installs its
own ``INFO: ...`` console handler at import, and the messages also reach the root handlers Hydra sets up),
Lightning's "Tip: ... litlogger / litmodels" adverts, the ``LeafSpec`` deprecation that Lightning's own
pytree helper triggers in recent torch, the model summary's note that it cannot size bf16 weights, MLflow's
"Experiment ... not found. Creating it." as a WARNING (it is what a first run is meant to do) and MLflow's
artifact-download progress bars in the server's and the gate's logs. Real warnings from those libraries
still come through: the filters match these messages only.

Imports nothing heavy (logging, warnings, os), so ``serving/`` may use it without pulling torch in.
"""

from __future__ import annotations

import logging
import os
import warnings

# (logger, substring): records dropped
_DROPPED = (
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip:"),
    ("lightning.fabric.utilities.rank_zero", "💡 Tip:"),
)
# (logger, substring): records shown at INFO instead of WARNING
_DOWNGRADED = (("lightning.pytorch.loggers.mlflow", "not found. Creating it."),)
_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",
    r"Precision bf16-mixed is not supported by the model summary.*",
)


class _Drop(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


class _Downgrade(_Drop):
    def filter(self, record: logging.LogRecord) -> bool:
        if self.text in record.getMessage() and record.levelno > logging.INFO:
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_environment() -> None:
    """Environment switches: set before MLflow reads them (the CLIs call this at import time)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def quiet() -> None:
    """Apply every filter; idempotent. Call it after logging is configured (inside ``@hydra.main``)."""
    quiet_environment()
    for pattern in _WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    # Lightning's own console handlers duplicate what the root (Hydra's console and job-log) handlers print;
    # with them gone and propagation on, each line appears once and also lands in the run's log file
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        if logging.getLogger().handlers:
            logger.propagate = True
    for name, text in _DROPPED:
        _add_once(logging.getLogger(name), _Drop(text))
    for name, text in _DOWNGRADED:
        _add_once(logging.getLogger(name), _Downgrade(text))


def _add_once(logger: logging.Logger, new: _Drop) -> None:
    if not any(type(f) is type(new) and getattr(f, "text", None) == new.text for f in logger.filters):
        logger.addFilter(new)

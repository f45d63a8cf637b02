"""Validate every config of every CLI, like ``databricks bundle validate``: ``python scripts/validate.py``.

``model=FOLDER`` also checks a model folder against the serve, predict and monitor configs;
``cli=serve,monitor`` and ``env=prod`` narrow the run, ``full=true`` widens it (every group option under every
environment); ``config_dir=DIR`` validates another copy of ``configs/``. Prints a summary and, when something
is wrong, a numbered list of problems (file, key, reason). Exit status: 0 no problems, 1 problems, 2 bad
arguments. The logic lives in :mod:`seismic.validation`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from seismic.validation import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], root=Path(__file__).resolve().parents[1]))

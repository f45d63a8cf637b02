"""Export a checkpoint as a model folder (ONNX, metadata, reference profile, weights); optionally register it.

``python scripts/export.py ckpt_path=PATH [data=segy data.segy.path=...] [publish.register=true run_id=ID]``;
prints a JSON summary. Exit status 2 with one line on stderr when the export or the registry fails.
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise

import hydra
from omegaconf import DictConfig

import seismic.config  # noqa: F401  (registers the config schemas)


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
def main(cfg: DictConfig) -> None:
    from seismic.export.onnx import ExportError
    from seismic.pipeline.publish import export_checkpoint
    from seismic.pipeline.quiet import quiet
    from seismic.registry.tracking_store import TrackingError

    quiet()  # loading the checkpoint imports Lightning, whose console handler would double its lines
    try:
        print(json.dumps(export_checkpoint(cfg), indent=2))
    except (ExportError, TrackingError, FileNotFoundError, ValueError) as err:
        print(f"export failed: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Train, test and track a facies classifier: ``python scripts/train.py [overrides]`` (``-m`` for sweeps)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file otherwise

import hydra
from omegaconf import DictConfig

import seismic.config  # noqa: F401  (registers the config schemas)


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from seismic.export.onnx import ExportError
    from seismic.io.errors import SeismicIOError
    from seismic.pipeline.quiet import quiet
    from seismic.pipeline.train import train
    from seismic.registry.tracking_store import TrackingError

    quiet()  # after imports and Hydra's logging setup: Lightning installs its console handler at import

    try:
        metrics = train(cfg)
    except (TrackingError, ExportError, SeismicIOError) as err:
        # errors whose message already names the server, model, file or field: one line, not a traceback
        print(f"train.py: {type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(2)
    # a sweeper maximises what this returns; prefer the best epoch's value of the monitored metric
    return metrics.get(f"{cfg.optimized_metric}_best", metrics.get(cfg.optimized_metric))


if __name__ == "__main__":
    main()

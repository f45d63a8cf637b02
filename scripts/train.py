"""Train, test and track a facies classifier: ``python scripts/train.py [overrides]`` (``-m`` for sweeps)."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import hydra
from omegaconf import DictConfig

import seismic.config  # noqa: F401  (registers the config schemas)


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from seismic.pipeline.train import train

    metrics = train(cfg)
    # a sweeper maximises what this returns; prefer the best epoch's value of the monitored metric
    return metrics.get(f"{cfg.optimized_metric}_best", metrics.get(cfg.optimized_metric))


if __name__ == "__main__":
    main()

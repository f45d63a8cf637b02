"""Write the synthetic survey (SEG-Y + labels + provenance), verify the read-back, check its quality."""

from __future__ import annotations

import json
import os

import hydra
from omegaconf import DictConfig

import seismic.config  # noqa: F401  (registers the config schemas)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@hydra.main(version_base="1.3", config_path="../configs", config_name="make_survey")
def main(cfg: DictConfig) -> None:
    from seismic.pipeline.survey import make_survey

    print(json.dumps(make_survey(cfg), indent=2))


if __name__ == "__main__":
    main()

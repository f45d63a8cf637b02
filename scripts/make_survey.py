"""Write the synthetic survey (SEG-Y + labels + provenance), verify the read-back, check its quality.

Exit status 2 with one line on stderr for sizes the generator or the split cannot use (checked before
anything is written) or a file that cannot be written.
"""

from __future__ import annotations

import json
import os
import sys

import hydra
from omegaconf import DictConfig

import seismic.config  # noqa: F401  (registers the config schemas)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@hydra.main(version_base="1.3", config_path="../configs", config_name="make_survey")
def main(cfg: DictConfig) -> None:
    from seismic.io.errors import SeismicIOError
    from seismic.pipeline.survey import make_survey

    try:
        summary = make_survey(cfg)
    except (ValueError, RuntimeError, SeismicIOError, OSError) as err:  # sizes are checked before writing
        print(f"make_survey failed: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

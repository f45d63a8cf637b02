"""Batch-score a SEG-Y cube: ``python scripts/predict.py model.source=MODEL_DIR input=CUBE.sgy``.

See ``configs/predict.yaml`` for every option and :mod:`serving.batch` for what is written. Prints one line
and a JSON summary; exit status 2 with one line on stderr when the input or the model cannot be used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import hydra
from omegaconf import DictConfig

import seismic.config  # noqa: F401  (registers the ${seismic.root:} resolver that configs/paths uses)


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from seismic.io.errors import SeismicIOError
    from serving.batch import BatchScoringError, score_segy
    from serving.inference_log import InferenceLogWriter, install_sigterm_flush
    from serving.runtime import ModelLoadError, load_model

    out = cfg.output
    classes = Path(out.classes or Path(cfg.paths.log_dir) / "predict" / f"{Path(cfg.input).stem}.classes.sgy")
    summary = Path(out.summary or classes.with_suffix(".summary.parquet"))
    try:
        model = load_model(
            cfg.model.source,
            providers=list(cfg.runtime.providers),
            intra_op_threads=cfg.runtime.intra_op_threads,
            inter_op_threads=cfg.runtime.inter_op_threads,
            tracking_uri=cfg.model.tracking_uri,
        )
        with contextlib.ExitStack() as stack:
            writer = None
            if cfg.log.enabled:
                writer = stack.enter_context(
                    InferenceLogWriter(
                        cfg.log.directory,
                        dt_ms=model.dt_ms,
                        sample_fraction=cfg.log.sample_fraction,
                        max_buffer_rows=cfg.log.max_buffer_rows,
                    )
                )
                install_sigterm_flush(writer)
            result = score_segy(
                model,
                cfg.input,
                classes,
                probability_path=out.max_probability,
                summary_path=summary,
                chunk_inlines=cfg.chunk.chunk_inlines,
                max_memory_mb=cfg.chunk.max_memory_mb,
                batch_size=cfg.chunk.batch_size,
                class_format=out.class_format,
                iline=cfg.segy.iline,
                xline=cfg.segy.xline,
                log_writer=writer,
                progress=cfg.progress,
            )
    except (SeismicIOError, BatchScoringError, ModelLoadError, ValueError) as err:
        print(f"predict failed: {err}", file=sys.stderr)
        sys.exit(2)
    report = result.to_dict()
    if writer is not None:
        report["inference_log"] = dataclasses.asdict(writer.stats)
    print(f"scored {result.windows} windows in {result.seconds:.1f} s ({result.windows_per_s:.0f} windows/s)")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

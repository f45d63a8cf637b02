"""Batch-score a SEG-Y cube: ``python scripts/predict.py model.source=MODEL_DIR input=CUBE.sgy``.

See ``configs/predict.yaml`` for every option and :mod:`serving.batch` for what is written; ``engine=ray``
scores the inline chunks on a Ray cluster (:mod:`serving.ray_batch`) and writes the same files. Prints one
line and a JSON summary; exit status 2 with one line on stderr when a setting, the input or the model cannot
be used.

Interruption: on SIGTERM or Ctrl-C (SIGINT) the outputs' temporary ``.<name>.<random>.partial`` files are
removed, one line on stderr names them, and the exit status is 128 + the signal number. A SIGKILL runs no
cleanup: the next run that writes the same outputs removes the partial files it finds and says so (one job
owns its outputs; two runs writing the same files at once are not supported).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault(
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
)  # a models:/ download draws a bar per file

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

import seismic.config  # noqa: F401  (registers the ${seismic.root:} resolver that configs/paths uses)


class Interrupted(BaseException):
    """Raised by the SIGTERM/SIGINT handler, so every output's context manager unwinds and removes its
    partial file (a BaseException, like KeyboardInterrupt: no ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int, partials: list[Path]) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.partials = signum, partials


def interrupt_on_signals(outputs: list[Path]) -> None:
    """Turn SIGTERM and SIGINT into :class:`Interrupted`, noting the partial files that exist at that moment
    (the unwinding removes them, so afterwards there is nothing left to list)."""
    from seismic.io.atomic import partial_files

    def handler(signum: int, frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):  # a second Ctrl-C must not break off the cleanup
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum, [p for out in outputs for p in partial_files(out)])

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@hydra.main(version_base="1.3", config_path="../configs", config_name="predict")
def main(cfg: DictConfig) -> None:
    from pydantic import ValidationError

    from seismic.io.atomic import remove_partials
    from seismic.io.errors import SeismicIOError
    from serving.batch import BatchScoringError, score_segy
    from serving.batch_input import InputOptions
    from serving.inference_log import InferenceLogWriter, install_sigterm_flush
    from serving.predict_settings import load_predict_settings
    from serving.runtime import ModelLoadError, load_model

    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
        s = load_predict_settings(plain)  # type: ignore[arg-type]
    except MissingMandatoryValue as err:
        print(f"predict failed: {err.full_key} is required ({err.full_key}=...)", file=sys.stderr)
        sys.exit(2)
    except ValidationError as err:
        print(f"predict failed: {err}", file=sys.stderr)
        sys.exit(2)
    out = s.output
    classes = Path(out.classes or Path(cfg.paths.log_dir) / "predict" / f"{Path(s.input).stem}.classes.sgy")
    summary = Path(out.summary or classes.with_suffix(".summary.parquet"))
    outputs = [classes, summary, *([Path(out.max_probability)] if out.max_probability else [])]
    stale = remove_partials(outputs)  # left by a SIGKILLed run (no cleanup ran): they are ours to remove
    if stale:
        print(
            f"predict: removed {len(stale)} stale partial file(s) of an interrupted run: {_names(stale)}",
            file=sys.stderr,
        )
    interrupt_on_signals(outputs)  # before install_sigterm_flush, which chains to it after flushing the log
    # every sample of the cube is one window: a big cube takes a while, so say up front what is scored and
    # where the results will be (tqdm then shows the rate and the time left). Only with the bar:
    # progress=false keeps stderr to the one line that a failure or an interruption prints
    if s.progress:
        print(f"predict: scoring {s.input} with {s.model.source}; writing {_names(outputs)}", file=sys.stderr)
    writer = None
    try:
        if s.engine == "ray":
            result = score_on_ray(s, classes, summary)
        else:
            model = load_model(
                s.model.source,
                providers=list(s.runtime.providers),
                intra_op_threads=s.runtime.intra_op_threads,
                inter_op_threads=s.runtime.inter_op_threads,
                tracking_uri=s.model.tracking_uri,
                spin_wait=s.runtime.spin_wait,
            )
            with contextlib.ExitStack() as stack:
                if s.log.enabled:
                    writer = stack.enter_context(
                        InferenceLogWriter(
                            s.log.directory,
                            dt_ms=model.dt_ms,
                            sample_fraction=s.log.sample_fraction,
                            feature_fraction=s.log.feature_fraction,
                            feature_rate=s.log.feature_rate,
                            max_buffer_rows=s.log.max_buffer_rows,
                        )
                    )
                    install_sigterm_flush(writer)
                result = score_segy(
                    model,
                    s.input,
                    classes,
                    probability_path=out.max_probability,
                    summary_path=summary,
                    chunk_inlines=s.chunk.chunk_inlines,
                    max_memory_mb=s.chunk.max_memory_mb,
                    batch_size=s.chunk.batch_size,
                    class_format=out.class_format,
                    iline=s.segy.iline,
                    xline=s.segy.xline,
                    log_writer=writer,
                    progress=s.progress,
                    options=InputOptions(s.normalisation, s.max_scale_ratio, s.resample),
                    maps_dir=out.maps_dir,
                    overlap=s.chunk.overlap,
                    passes=s.chunk.passes,
                    maps_options={
                        "windows_per_trace": out.maps_windows_per_trace,
                        "block": out.maps_block,
                        "time_slice": out.maps_time_slice,
                    },
                )
    except (SeismicIOError, BatchScoringError, ModelLoadError, ValueError, ImportError) as err:
        print(f"predict failed: {err}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as stop:
        left = remove_partials(outputs)  # normally none: the unwinding removed them
        gone = sorted(set(stop.partials) | set(left))
        what = f"removed partial file(s) {_names(gone)}" if gone else "no output file had been started"
        print(f"predict interrupted by {stop}: {what}; no output written", file=sys.stderr)
        sys.exit(128 + stop.signum)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the outputs are complete: nothing left to clean up
    signal.signal(signal.SIGINT, signal.default_int_handler)
    report = result.to_dict()
    if writer is not None:
        report["inference_log"] = dataclasses.asdict(writer.stats)
    print(f"scored {result.windows} windows in {result.seconds:.1f} s ({result.windows_per_s:.0f} windows/s)")
    if s.progress:
        print(f"wrote {_names([p for p in outputs if p.exists()])}", file=sys.stderr)
    print(json.dumps(report, indent=2))


def _names(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def score_on_ray(s, classes: Path, summary: Path):  # type: ignore[no-untyped-def]
    try:
        from serving.ray_batch import score_segy_ray
    except ImportError as err:  # ray is an optional extra
        raise ImportError(f"engine=ray needs Ray: pip install -e '.[ray]' ({err})") from err
    return score_segy_ray(
        s.model.source,
        s.input,
        classes,
        probability_path=s.output.max_probability,
        summary_path=summary,
        chunk_inlines=s.chunk.chunk_inlines,
        max_memory_mb=s.chunk.max_memory_mb,
        batch_size=s.chunk.batch_size,
        class_format=s.output.class_format,
        iline=s.segy.iline,
        xline=s.segy.xline,
        providers=list(s.runtime.providers),
        intra_op_threads=s.runtime.intra_op_threads,
        inter_op_threads=s.runtime.inter_op_threads,
        tracking_uri=s.model.tracking_uri,
        address=s.ray.address,
        actors=s.ray.actors,
        num_cpus=s.ray.num_cpus,
        num_gpus=s.ray.num_gpus,
        progress=s.progress,
    )


if __name__ == "__main__":
    main()

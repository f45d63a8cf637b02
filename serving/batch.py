"""Batch scoring of a SEG-Y volume: one prediction per sample, written as SEG-Y on the input's grid.

Every sample of every trace is a window centre, so the class volume has the input's shape, geometry and
trace headers (:class:`seismic.io.segy_like.SegyLikeWriter`). The volume is read in blocks of
``chunk_inlines`` inlines from the memory-mapped file and windows are cut with the training code's own
:func:`seismic.data.windows.extract_windows`, indexed in whole-volume coordinates: a window near a block
edge reads the neighbouring inlines it needs (a crossline-axis patch reaches ``W // 2`` inlines across, and
under ``reflect`` padding at the volume edge further still), and padding happens only at the *volume* edge,
so any chunk size gives exactly the whole-volume result. Inline-axis patches and trace windows read their
own inline only. Under ``pad_mode="valid"`` centres whose window does not fit are not scored: their class
is :data:`FILL_CLASS` and their probability 0.

Memory is bounded by ``max_memory_mb`` (which sets the chunk size: the input block with its halo, the
outputs and their encoded copies) plus one batch of windows, whatever the file size. Outputs (class volume,
optional max-probability volume, optional Parquet summary) are written under temporary names and renamed
together at the end: a corrupt input, a NaN sample or any other failure leaves none of them. Sampled windows
can be sent to an :class:`~serving.inference_log.InferenceLogWriter`, so batch traffic is monitored too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from seismic.data.windows import WindowSpec, extract_windows, valid_centre_ranges, window_trace_indices
from seismic.inference.tiling import summarise_tiles
from seismic.io.atomic import atomic_file
from seismic.io.segy import SegyFile
from seismic.io.segy_like import SegyLikeWriter
from serving.batch_dense import (
    DenseScoringError,
    check_dense_spec,
    dense_chunk_inlines,
    passes_for,
    score_chunk_dense,
)
from serving.batch_input import DEFAULT_INPUT, InputOptions, open_input
from serving.inference_log import InferenceLogWriter
from serving.quality_maps import maps_for
from serving.runtime import LoadedModel

log = logging.getLogger(__name__)

FILL_CLASS = -1  # class of a centre that was not scored (pad_mode "valid" near the edges)
_ENCODED = {"int8": 1, "int16": 2}


class BatchScoringError(RuntimeError):
    """The volume cannot be scored with this model; nothing was written."""


@dataclass(frozen=True)
class BatchResult:
    """What a scoring run did."""

    input: str
    class_path: str
    probability_path: str | None
    summary_path: str | None
    model_name: str
    model_version: str
    provider: str
    shape: tuple[int, int, int]
    windows: int
    seconds: float
    windows_per_s: float
    chunk_inlines: int
    class_counts: dict[str, int]
    input_plan: dict[str, Any] = field(default_factory=dict)  # layout, scale, rescaling: InputPlan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _InlineBlock:
    """Inlines ``[start, start + len(data))`` of a volume of ``shape``, indexed in the volume's coordinates:
    what :func:`extract_windows` sees, so its padding is decided against the whole volume."""

    def __init__(self, data: np.ndarray, start: int, shape: tuple[int, int, int]) -> None:
        self.data, self.start, self.shape = data, start, shape

    def __getitem__(self, key: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        il, xl, t = key
        return self.data[il - self.start, xl, t]


def window_spec(model: LoadedModel) -> WindowSpec:
    spec = WindowSpec.from_mapping(dict(model.metadata["window"]))
    if spec.sample_shape != model.window_shape:
        raise BatchScoringError(
            f"model metadata disagree: window {spec.to_dict()} cuts {spec.sample_shape}, the graph takes "
            f"{model.window_shape}"
        )
    return spec


def halo(spec: WindowSpec, start: int, stop: int, shape: tuple[int, int, int]) -> tuple[int, int]:
    """The inline range ``[lo, hi)`` that windows centred on inlines ``[start, stop)`` read."""
    if spec.axis == "inline" or spec.width == 1:
        return start, stop
    if spec.pad_mode == "valid":  # no padding: only centres whose window fits are scored
        before = spec.width // 2
        return max(0, start - before), min(shape[0], stop + spec.width - before - 1)
    il = np.arange(start, stop)
    il_idx, _, _ = window_trace_indices(il, np.zeros_like(il), spec, shape)
    return int(min(il_idx.min(), start)), int(max(il_idx.max() + 1, stop))


def chunk_inlines_for(shape: tuple[int, int, int], spec: WindowSpec, max_memory_mb: float) -> int:
    """Inlines per chunk so that one chunk's arrays fit ``max_memory_mb``: per inline, the float32 input,
    the class and probability outputs with their encoded copies and the input read again for its trace
    headers (~20 bytes per sample); the crossline-axis halo is added on top, as it must be read anyway."""
    n_il, n_xl, n_t = shape
    per_inline = n_xl * (n_t * 20 + 480)
    k = int(max_memory_mb * 2**20 // per_inline) - (spec.width if spec.axis == "crossline" else 0)
    return int(np.clip(k, 1, n_il))


def volume_shape(volume: Any) -> tuple[int, int, int]:
    shape: tuple[int, ...] = tuple(int(n) for n in volume.shape)
    if len(shape) != 3:
        raise BatchScoringError(f"expected a post-stack cube [il, xl, t], got shape {shape}")
    return shape  # type: ignore[return-value]


def score_chunk(
    model: LoadedModel,
    volume: Any,
    start: int,
    stop: int,
    *,
    batch_size: int = 1024,
    on_batch: Any = None,
    prefetch: ThreadPoolExecutor | None = None,
    overlap: float | None = None,
    passes: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score the centres on inlines ``[start, stop)`` of ``volume`` (an array, or a :class:`SegyFile` cube
    read lazily): ``(classes [k, n_xl, n_t] int16, max_probability [k, n_xl, n_t] float32)``.

    Only the inlines those windows read are loaded (:func:`halo`); windows are indexed in whole-volume
    coordinates, so any split into chunks gives the whole-volume result. ``on_batch`` as in
    :func:`iter_scores`; ``prefetch``: the one-thread executor that cuts the next batch (one per call if
    ``None``). A segmentation model (``model.dense``) labels the chunk by blended tiles instead
    (:mod:`serving.batch_dense`; ``overlap``: of its tiles, default the model's ``default_overlap``;
    ``passes``: ``inline`` / ``crossline`` / ``both`` sections, default the model's window axis).
    """
    spec = window_spec(model)
    shape = volume_shape(volume)
    if model.dense:  # segmentation: blended tiles per inline (serving.batch_dense)
        try:
            return score_chunk_dense(
                model,
                volume,
                spec,
                start,
                stop,
                batch_size=batch_size,
                on_batch=on_batch,
                overlap=overlap,
                passes=passes,
            )
        except DenseScoringError as err:
            raise BatchScoringError(str(err)) from None
    if prefetch is None:
        with ThreadPoolExecutor(1, thread_name_prefix="cut-windows") as own:
            return score_chunk(
                model, volume, start, stop, batch_size=batch_size, on_batch=on_batch, prefetch=own
            )
    (il_lo, il_hi), (xl_lo, xl_hi), (t_lo, t_hi) = valid_centre_ranges(shape, spec)
    lo, hi = halo(spec, start, stop, shape)
    data = (
        volume.read_inlines(lo, hi) if isinstance(volume, SegyFile) else np.asarray(volume[lo:hi], np.float32)
    )
    if not np.isfinite(data).all():
        bad = lo + int(np.flatnonzero(~np.isfinite(data).reshape(len(data), -1).all(axis=1))[0])
        raise BatchScoringError(f"inline position {bad} holds NaN or Inf samples; nothing was written")
    block = _InlineBlock(data, lo, shape)
    classes = np.full((stop - start, shape[1], shape[2]), FILL_CLASS, dtype=np.int16)
    max_prob = np.zeros(classes.shape, dtype=np.float32)
    origin = (max(start, il_lo), xl_lo, t_lo)
    sizes = (max(0, min(stop, il_hi) - origin[0]), xl_hi - xl_lo, t_hi - t_lo)
    n = int(np.prod(sizes))

    def cut(s: int) -> tuple[np.ndarray, ...]:
        i, x, t = np.unravel_index(np.arange(s, min(s + batch_size, n)), sizes)
        il, xl, tt = i + origin[0], x + origin[1], t + origin[2]
        windows = extract_windows(block, il, xl, tt, spec)  # type: ignore[arg-type]
        return il, xl, tt, windows, model.normalise(windows)

    # the next batch is cut while onnxruntime (which releases the GIL) runs this one
    pending = prefetch.submit(cut, 0)
    for s in range(0, n, batch_size):
        il, xl, tt, windows, normalised = pending.result()
        if s + batch_size < n:
            pending = prefetch.submit(cut, s + batch_size)
        began = time.perf_counter()
        out = model.run(normalised)
        seconds = time.perf_counter() - began
        classes[il - start, xl, tt] = out["class"]
        max_prob[il - start, xl, tt] = out["probabilities"].max(axis=1)
        if on_batch is not None:
            on_batch(windows, out, start, seconds)
    return classes, max_prob


def iter_scores(
    model: LoadedModel,
    volume: Any,
    *,
    chunk_inlines: int,
    batch_size: int = 1024,
    on_batch: Any = None,
    overlap: float | None = None,
    passes: str | None = None,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Score ``volume`` (``[n_il, n_xl, n_t]``; an array, or a :class:`SegyFile` cube read lazily) chunk by
    chunk: yields ``(start_inline, classes [k, n_xl, n_t] int16, max_probability [k, n_xl, n_t] float32)``.

    ``on_batch(windows, outputs, start, seconds)`` is called after every batch (progress, inference log);
    ``seconds`` is the batch's onnxruntime time.
    """
    window_spec(model)
    shape = volume_shape(volume)
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="cut-windows")
    try:
        for start in range(0, shape[0], chunk_inlines):
            stop = min(start + chunk_inlines, shape[0])
            classes, max_prob = score_chunk(
                model,
                volume,
                start,
                stop,
                batch_size=batch_size,
                on_batch=on_batch,
                prefetch=prefetch,
                overlap=overlap,
                passes=passes,
            )
            yield start, classes, max_prob
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)


class Progress:
    """tqdm bar in windows (it shows windows/s), or nothing."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="win", unit_scale=True, desc="scoring", file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _summary_table(
    counts: np.ndarray, inlines: np.ndarray, mean_prob: np.ndarray, class_names: list[str], meta: dict
) -> pa.Table:
    """One row per inline: inline number, windows scored, count per class, mean max probability."""
    columns: dict[str, Any] = {"inline": inlines.astype(np.int64), "windows": counts.sum(axis=1)}
    columns.update({f"count_{name}": counts[:, c] for c, name in enumerate(class_names)})
    columns["mean_max_probability"] = mean_prob
    table = pa.table(columns)
    return table.replace_schema_metadata({b"seismic.batch_scoring": json.dumps(meta).encode()})


def check_options(model: LoadedModel, class_format: str, batch_size: int) -> None:
    if class_format not in _ENCODED:
        raise ValueError(f"class_format must be one of {sorted(_ENCODED)}, got {class_format!r}")
    if len(model.class_names) > 127 and class_format == "int8":
        raise ValueError(f"{len(model.class_names)} classes do not fit int8; use int16")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")


@contextlib.contextmanager
def open_cube(model: LoadedModel, input_path: str | Path, *, iline: int, xline: int) -> Iterator[SegyFile]:
    """The input checked as by :func:`serving.batch_input.open_input` with the default options, for engines
    whose workers read the file themselves (amplitudes as they are): it must be a 3D post-stack cube."""
    spec = window_spec(model)
    with open_input(model, spec, input_path, iline=iline, xline=xline, options=DEFAULT_INPUT) as (segy, vol):
        if not isinstance(segy, SegyFile):
            raise BatchScoringError(f"{input_path}: {vol.plan.notes[0]}; this engine scores 3D cubes only")
        valid_centre_ranges(segy.shape, spec)  # type: ignore[arg-type]  (too small for a 'valid' window)
        yield segy


def write_scores(
    model: LoadedModel,
    segy: SegyFile,
    chunks: Iterable[tuple[int, np.ndarray, np.ndarray]],
    class_path: str | Path,
    *,
    probability_path: str | Path | None,
    summary_path: str | Path | None,
    class_format: str,
    chunk_inlines: int,
    started: float,
    input_plan: dict[str, Any] | None = None,
) -> BatchResult:
    """Write scored chunks ``(start_inline, classes, max_probability)``, in any order, as the class volume
    (and the max-probability volume and summary): all outputs appear together at the end, or none if
    ``chunks`` raises. Shared by :func:`score_segy` and the Ray engine (:mod:`serving.ray_batch`)."""
    shape: tuple[int, int, int] = segy.shape  # type: ignore[assignment]
    n_classes = len(model.class_names)
    counts = np.zeros((shape[0], n_classes), dtype=np.int64)
    prob_sum = np.zeros(shape[0])
    with contextlib.ExitStack() as stack:
        # entered first, renamed last: the class volume appears only once the other outputs are in place
        classes_out = stack.enter_context(SegyLikeWriter(segy, class_path, class_format))
        probs_out = (
            stack.enter_context(SegyLikeWriter(segy, probability_path, "ieee")) if probability_path else None
        )
        summary_tmp = stack.enter_context(atomic_file(summary_path)) if summary_path else None
        windows = 0
        for start, classes, max_prob in chunks:
            classes_out.write_inlines(start, classes)
            if probs_out is not None:
                probs_out.write_inlines(start, max_prob)
            rows = slice(start, start + len(classes))
            scored = classes.reshape(len(classes), -1)
            for c in range(n_classes):
                counts[rows, c] = (scored == c).sum(axis=1)
            prob_sum[rows] = max_prob.reshape(len(classes), -1).sum(axis=1)
            windows += int((scored != FILL_CLASS).sum())
        seconds = time.perf_counter() - started
        result = BatchResult(
            input=str(segy.path),
            class_path=str(class_path),
            probability_path=str(probability_path) if probability_path else None,
            summary_path=str(summary_path) if summary_path else None,
            model_name=model.name,
            model_version=model.version,
            provider=model.provider,
            shape=shape,
            windows=windows,
            seconds=round(seconds, 3),
            windows_per_s=round(windows / seconds, 1),
            chunk_inlines=chunk_inlines,
            class_counts={name: int(counts[:, c].sum()) for c, name in enumerate(model.class_names)},
            input_plan=input_plan or {},
        )
        if summary_tmp is not None:
            per_inline = np.maximum(counts.sum(axis=1), 1)
            table = _summary_table(
                counts,
                segy.inlines,
                prob_sum / per_inline,
                model.class_names,
                result.to_dict(),  # type: ignore[arg-type]
            )
            pq.write_table(table, summary_tmp)
    log.info(
        "scored %s: %d windows in %.1f s (%.0f windows/s)", segy.path, windows, seconds, windows / seconds
    )
    return result


def score_segy(
    model: LoadedModel,
    input_path: str | Path,
    class_path: str | Path,
    *,
    probability_path: str | Path | None = None,
    summary_path: str | Path | None = None,
    chunk_inlines: int | None = None,
    max_memory_mb: float = 256.0,
    batch_size: int = 1024,
    class_format: str = "int16",
    iline: int = 189,
    xline: int = 193,
    log_writer: InferenceLogWriter | None = None,
    progress: bool = True,
    options: InputOptions = DEFAULT_INPUT,
    maps_dir: str | Path | None = None,
    maps_options: dict[str, Any] | None = None,
    overlap: float | None = None,
    passes: str | None = None,
) -> BatchResult:
    """Score every sample of the cube at ``input_path``; write the class volume (and the others) atomically.

    ``chunk_inlines`` (default: from ``max_memory_mb``, see :func:`chunk_inlines_for`) inlines are read and
    scored at a time, ``batch_size`` windows per onnxruntime call. ``class_format``: ``int16`` or ``int8``
    (SEG-Y format codes 3 and 8). The input is opened and checked (headers, size, grid, window fit) before any
    output file is created; a :class:`~seismic.io.errors.SeismicIOError`, :class:`BatchScoringError` or
    :class:`~serving.batch_input.BatchInputError` says why it cannot be scored. ``options``: amplitude
    normalisation and resampling (:mod:`serving.batch_input`); a 2D line is scored as one section.
    ``maps_dir``: also write the uncertainty / drift / time-slice maps there (:mod:`serving.quality_maps`,
    ``maps_options`` its keyword arguments).
    """
    check_options(model, class_format, batch_size)
    started = time.perf_counter()
    job = uuid.uuid4().hex[:12]
    spec = window_spec(model)
    if model.dense:
        try:
            check_dense_spec(spec, passes)
        except DenseScoringError as err:
            raise BatchScoringError(str(err)) from None
        if maps_dir:
            raise BatchScoringError(
                "output.maps_dir: the uncertainty/drift maps score window classifiers; a segmentation "
                "model's max-probability volume (output.max_probability) is its uncertainty map"
            )
    with open_input(model, spec, input_path, iline=iline, xline=xline, options=options) as (segy, volume):
        if model.dense:
            halo = spec.width if "crossline" in passes_for(spec, passes) else 0
            k = chunk_inlines or dense_chunk_inlines(
                volume.shape, len(model.class_names), max_memory_mb, halo
            )
        else:
            valid_centre_ranges(volume.shape, spec)  # too small for a 'valid' window
            k = chunk_inlines or chunk_inlines_for(volume.shape, spec, max_memory_mb)
        bar = Progress(int(np.prod(volume.shape)), progress)
        # the maps read what the model reads: rescaled and resampled as the options say
        maps = maps_for(model, volume, spec, **(maps_options or {})) if maps_dir else None

        def on_batch(windows: np.ndarray, out: dict[str, np.ndarray], start: int, seconds: float) -> None:
            # dense models: one row per tile, the bar counts its samples (overlaps counted again)
            bar.update(
                len(windows) if not model.dense else int(np.prod(windows.shape[:1] + windows.shape[2:]))
            )
            if log_writer is not None:
                # a segmentation model logs one row per tile: its majority class and mean probabilities
                rows = summarise_tiles(out["probabilities"]) if model.dense else out
                log_writer.log(
                    f"batch-{job}-il{start}", model.version, windows, rows["class"], rows["probabilities"],
                    out["embedding"], seconds, class_shares=rows.get("class_shares"),
                    mean_max_probability=rows.get("mean_max_probability"),
                )  # fmt: skip

        scored = iter_scores(
            model,
            volume,
            chunk_inlines=k,
            batch_size=batch_size,
            on_batch=on_batch,
            overlap=overlap,
            passes=passes,
        )
        chunks = ((s, volume.restore(c), volume.restore(p)) for s, c, p in scored)
        try:
            result = write_scores(
                model,
                segy,  # type: ignore[arg-type]  (a Section has what the writers use of a cube)
                chunks if maps is None else maps.observe(chunks),
                class_path,
                probability_path=probability_path,
                summary_path=summary_path,
                class_format=class_format,
                chunk_inlines=k,
                started=started,
                input_plan=volume.plan.to_dict(),
            )
        finally:
            bar.close()
        if maps is not None:
            maps.write(maps_dir, segy.inlines, segy.crosslines)
        return result

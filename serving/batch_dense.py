"""Batch scoring with a segmentation model: every inline chunk labelled by blended overlapping tiles.

:func:`serving.batch.score_chunk` hands a dense model's chunks here. A 2D model (tiles of W traces x T
samples along the inline) labels each inline section of the chunk on its own, a 1D model each trace, with
tiles of the trained size laid with the model's ``default_overlap`` and blended by Gaussian weights
(:mod:`seismic.inference.tiling`, as MONAI's sliding window). Nothing reaches across inlines, so a chunk
needs no halo and any chunk size gives the whole-volume result (up to onnxruntime's float reordering between
batch compositions, ~1e-6). Crossline sections (a model trained along crosslines, or ``passes="both"``: the
inline and crossline passes averaged) span inlines: their tiles lie on the volume's global grid and a chunk
reads the inlines those reaching into it need, so they stay chunk-independent too.

The inference log (:func:`serving.batch.score_segy`) gets one row per tile: the raw tile, its majority class,
its probabilities averaged over its samples (:func:`seismic.inference.tiling.summarise_tiles`) and its
embedding, as the reference profile holds it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from seismic.data.windows import WindowSpec
from seismic.inference.tiling import blend_sections, class_argmax, tile_starts
from seismic.io.segy import SegyFile
from serving.runtime import LoadedModel

# samples per onnxruntime call: ~2.6e5 keeps a call's activations within tens of MB and is past the size
# where larger batches stop paying off on CPU; ``batch_size`` (tiles) is capped by it
MAX_SAMPLES_PER_CALL = 1 << 18


class DenseScoringError(RuntimeError):
    """The volume cannot be scored with this segmentation model."""


def tiles_per_call(spec: WindowSpec, batch_size: int) -> int:
    return int(max(1, min(batch_size, MAX_SAMPLES_PER_CALL // (spec.width * spec.length))))


PASSES = ("inline", "crossline", "both")


def passes_for(spec: WindowSpec, passes: str | None) -> list[str]:
    """The section directions to tile: a 1D model scores traces (one pass); a 2D model its training axis
    by default, or ``inline``, ``crossline`` or ``both`` (the two passes' probabilities averaged)."""
    if passes is not None and passes not in PASSES:
        raise DenseScoringError(f"chunk.passes must be one of {PASSES} or null, got {passes!r}")
    if spec.width == 1:
        return ["inline"]
    chosen = passes or spec.axis
    return ["inline", "crossline"] if chosen == "both" else [chosen]


def check_dense_spec(spec: WindowSpec, passes: str | None = None) -> None:
    """Refuse what dense batch scoring cannot do (before any file is opened or written)."""
    passes_for(spec, passes)


def crossline_halo(n_il: int, width: int, overlap: float, start: int, stop: int) -> tuple[int, int, list]:
    """Inline range ``[lo, hi)`` that the crossline-section tiles reaching into ``[start, stop)`` read, and
    their starts relative to ``lo`` (the global grid's, so every chunk blends the same tiles)."""
    if n_il <= width:
        return 0, n_il, [0]
    chosen = [s for s in tile_starts(n_il, width, overlap) if s < stop and s + width > start]
    lo, hi = min(chosen), max(chosen) + width
    return lo, hi, [s - lo for s in chosen]


def _read(volume: Any, lo: int, hi: int) -> np.ndarray:
    data = volume.read_inlines(lo, hi) if isinstance(volume, SegyFile) else np.asarray(volume[lo:hi])
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        bad = lo + int(np.flatnonzero(~np.isfinite(data).reshape(len(data), -1).all(axis=1))[0])
        raise DenseScoringError(f"inline position {bad} holds NaN or Inf samples; nothing was written")
    return data


def score_chunk_dense(
    model: LoadedModel,
    volume: Any,
    spec: WindowSpec,
    start: int,
    stop: int,
    *,
    batch_size: int = 1024,
    on_batch: Any = None,
    overlap: float | None = None,
    passes: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, max_probability)``, ``[k, n_xl, n_t]`` int16 / float32, of inlines ``[start, stop)``.

    ``passes`` (:func:`passes_for`): inline sections are scored from the chunk's own inlines; crossline
    sections from the chunk plus the inlines their tiles reach (:func:`crossline_halo`), on the global tile
    grid, so both stay chunk-independent. ``on_batch(raw_tiles, outputs, start, seconds)`` as
    :func:`serving.batch.iter_scores`'s, with the tiles' dense ``probabilities`` and their ``embedding``
    (:func:`~seismic.inference.tiling.summarise_tiles` makes log rows of them, when a log wants them).
    """
    directions = passes_for(spec, passes)
    overlap = model.default_overlap if overlap is None else float(overlap)
    shape = tuple(int(n) for n in volume.shape)
    seconds: list[float] = []  # per onnxruntime call, in call order (blending consumes them in that order)

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        began = time.perf_counter()
        probabilities, embedding = model.outputs(tiles, ("probabilities", "embedding"))
        if on_batch is not None:  # consumed by logged(), one per call
            seconds.append(time.perf_counter() - began)
        return probabilities, embedding

    def logged(raw: np.ndarray, probabilities: np.ndarray, embedding: np.ndarray, where: list) -> None:
        outputs = {"probabilities": probabilities, "embedding": embedding}
        on_batch(raw[:, None], outputs, start, seconds.pop(0))

    options = {
        "overlap": overlap,
        "num_classes": len(model.class_names),
        "batch_size": tiles_per_call(spec, batch_size),
        "normalise": model.normalise,
        "on_batch": logged if on_batch is not None else None,
        "prefetch": True,
    }
    k, n_xl, n_t = stop - start, shape[1], shape[2]
    blends = []
    for direction in directions:
        if spec.width == 1:  # every trace is a section of its own
            data = _read(volume, start, stop)
            probabilities = blend_sections(data.reshape(k * n_xl, n_t), run, (spec.length,), **options)
            blended = probabilities.reshape(k, n_xl, -1, n_t).transpose(0, 2, 1, 3)
        elif direction == "inline":
            blended = blend_sections(_read(volume, start, stop), run, (spec.width, spec.length), **options)
        else:  # crossline sections [n_xl, inlines, n_t] across the chunk and its halo
            lo, hi, starts = crossline_halo(shape[0], spec.width, overlap, start, stop)
            sections = _read(volume, lo, hi).transpose(1, 0, 2)
            blended = blend_sections(
                sections, run, (spec.width, spec.length), axis_starts=[starts, None], **options
            )[:, :, start - lo : stop - lo].transpose(2, 1, 0, 3)
        blends.append(blended)
    total = blends[0] if len(blends) == 1 else sum(blends[1:], blends[0]) / len(blends)
    classes, top = class_argmax(total)
    return classes.astype(np.int16), top


def dense_chunk_inlines(
    shape: tuple[int, int, int], n_classes: int, max_memory_mb: float, halo: int = 0
) -> int:
    """Inlines per chunk within ``max_memory_mb``: per sample the float32 input, the blended probabilities
    (``4 * n_classes`` bytes), the outputs with their encoded copies and the trace headers read again
    (~20 bytes); a crossline pass reads up to a tile width of inlines more on each side."""
    n_il, n_xl, n_t = shape
    per_inline = n_xl * (n_t * (24 + 4 * n_classes) + 480)
    return int(np.clip(int(max_memory_mb * 2**20 // per_inline) - 2 * halo, 1, n_il))

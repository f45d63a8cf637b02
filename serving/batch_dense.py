"""Batch scoring with a segmentation model: every inline chunk labelled by blended overlapping tiles.

:func:`serving.batch.score_chunk` hands a dense model's chunks here. A 2D model (tiles of W traces x T
samples along the inline) labels each inline section of the chunk on its own, a 1D model each trace, with
tiles of the trained size laid with the model's ``default_overlap`` and blended by Gaussian weights
(:mod:`seismic.inference.tiling`, as MONAI's sliding window). Nothing reaches across inlines, so a chunk
needs no halo and any chunk size gives the whole-volume result (up to onnxruntime's float reordering between
batch compositions, ~1e-6). Models trained on crossline-axis tiles are refused (their tiles span inlines).

The inference log gets one row per tile: the raw tile, its majority class, its probabilities averaged over
its samples (:func:`seismic.inference.tiling.summarise_tiles`) and its embedding, as the
reference profile holds it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from seismic.data.windows import WindowSpec
from seismic.inference.tiling import blend_sections, summarise_tiles
from seismic.io.segy import SegyFile
from serving.runtime import LoadedModel

# samples per onnxruntime call: ~2.6e5 keeps a call's activations within tens of MB and is past the size
# where larger batches stop paying off on CPU; ``batch_size`` (tiles) is capped by it
MAX_SAMPLES_PER_CALL = 1 << 18


class DenseScoringError(RuntimeError):
    """The volume cannot be scored with this segmentation model."""


def tiles_per_call(spec: WindowSpec, batch_size: int) -> int:
    return int(max(1, min(batch_size, MAX_SAMPLES_PER_CALL // (spec.width * spec.length))))


def check_dense_spec(spec: WindowSpec) -> None:
    """Refuse what dense batch scoring cannot do (before any file is opened or written)."""
    if spec.width > 1 and spec.axis != "inline":
        raise DenseScoringError(
            f"model window axis {spec.axis!r}: batch scoring lays segmentation tiles along inlines only; "
            "train the 2D segmentation model with data.window.axis=inline (data.sampling.cross_axis_fraction "
            "still shows it crossline sections)"
        )


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
) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, max_probability)``, ``[k, n_xl, n_t]`` int16 / float32, of inlines ``[start, stop)``.

    ``on_batch(raw_tiles, outputs, start, seconds)`` as :func:`serving.batch.iter_scores`'s, with one
    ``outputs`` row per tile (:func:`~seismic.inference.tiling.summarise_tiles` plus ``embedding``).
    """
    check_dense_spec(spec)
    data = (
        volume.read_inlines(start, stop) if isinstance(volume, SegyFile) else np.asarray(volume[start:stop])
    )
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        bad = start + int(np.flatnonzero(~np.isfinite(data).reshape(len(data), -1).all(axis=1))[0])
        raise DenseScoringError(f"inline position {bad} holds NaN or Inf samples; nothing was written")
    k, n_xl, n_t = data.shape
    if spec.width == 1:  # every trace is a section of its own
        sections, tile = data.reshape(k * n_xl, n_t), (spec.length,)
    else:
        sections, tile = data, (spec.width, spec.length)
    clock = {"seconds": 0.0}

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        began = time.perf_counter()
        out = model.run(tiles)
        clock["seconds"] = time.perf_counter() - began
        return out["probabilities"], out["embedding"]

    def logged(raw: np.ndarray, probabilities: np.ndarray, embedding: np.ndarray, where: list) -> None:
        rows = {**summarise_tiles(probabilities), "embedding": embedding}
        on_batch(raw[:, None], rows, start, clock["seconds"])

    probabilities = blend_sections(
        sections,
        run,
        tile,
        overlap=model.default_overlap if overlap is None else float(overlap),
        num_classes=len(model.class_names),
        batch_size=tiles_per_call(spec, batch_size),
        normalise=model.normalise,
        on_batch=logged if on_batch is not None else None,
    )
    classes = probabilities.argmax(axis=1).astype(np.int16).reshape(k, n_xl, n_t)
    max_prob = probabilities.max(axis=1).reshape(k, n_xl, n_t)
    return classes, max_prob


def dense_chunk_inlines(shape: tuple[int, int, int], n_classes: int, max_memory_mb: float) -> int:
    """Inlines per chunk within ``max_memory_mb``: per sample the float32 input, the blended probabilities
    (``4 * n_classes`` bytes), the outputs with their encoded copies and the trace headers read again
    (~20 bytes)."""
    n_il, n_xl, n_t = shape
    per_inline = n_xl * (n_t * (24 + 4 * n_classes) + 480)
    return int(np.clip(int(max_memory_mb * 2**20 // per_inline), 1, n_il))

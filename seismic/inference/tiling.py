"""Whole-section / whole-volume inference with a segmentation net by overlapping tiles blended smoothly.

Numpy only (no torch), so serving and batch scoring (onnxruntime) and training's held-out figure (PyTorch)
share it. As MONAI's ``sliding_window_inference`` with ``mode="gaussian"``: tiles of the trained size are
laid on a regular grid with ``overlap`` (the fraction of a tile shared with its neighbour along each tiled
axis; the last tile of an axis is moved back to end at the edge), each tile's class probabilities are
weighted by a Gaussian centred on the tile (``sigma = sigma_scale * size`` per axis, normalised to a maximum
of 1 and floored at ``1e-3`` so that edge samples covered by a single tile keep a weight), and every sample
gets ``sum_tiles w p / sum_tiles w``. Tile borders, where a net sees the least context, thus count least.

An axis shorter than its tile is padded by reflection to the tile size and the padding is cut off again;
the net itself never pads (:mod:`seismic.models.unet`).

The leading axis of ``sections`` is never tiled: each section (an inline of a cube, or a trace for a 1D
net) is scored on its own, so scoring a cube in chunks of inlines gives exactly the whole-cube result.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["TilePlan", "blend_sections", "class_argmax", "gaussian_weights", "summarise_tiles", "tile_starts"]

SIGMA_SCALE = 0.125  # MONAI's default
WEIGHT_FLOOR = 1e-3
DEFAULT_OVERLAP = 0.25  # MONAI's default; the models' metadata carry their own (export)

# run(tiles [N, 1, *tile] float32 normalised) -> (probabilities [N, C, *tile], embedding [N, D])
RunTiles = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def gaussian_weights(shape: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Separable Gaussian importance map of a tile, max 1, floored at :data:`WEIGHT_FLOOR` (float32)."""
    weights = np.ones((), dtype=np.float64)
    for size in shape:
        centre = (size - 1) / 2.0
        sigma = max(size * sigma_scale, 1e-6)
        axis = np.exp(-0.5 * ((np.arange(size) - centre) / sigma) ** 2)
        weights = np.multiply.outer(weights, axis)
    weights /= weights.max()
    return np.maximum(weights, WEIGHT_FLOOR).astype(np.float32)


def tile_starts(n: int, size: int, overlap: float) -> list[int]:
    """Start positions of tiles of ``size`` covering ``[0, n)`` with at least ``overlap`` shared between
    neighbours (the last one ends at ``n``); ``[0]`` when one tile covers it (``n <= size``)."""
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if size < 1:
        raise ValueError(f"tile size must be >= 1, got {size}")
    if n <= size:
        return [0]
    step = max(1, int(size * (1.0 - overlap)))
    count = math.ceil((n - size) / step) + 1
    # spread the tiles evenly instead of piling the remainder into the last step
    return [round(i * (n - size) / (count - 1)) for i in range(count)]


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles of one section of ``shape`` lie, and the normaliser of their blended weights."""

    shape: tuple[int, ...]  # the section's size along the tiled axes
    tile: tuple[int, ...]
    overlap: float
    sigma_scale: float = SIGMA_SCALE
    # explicit tile starts per tiled axis (None: the regular grid); a chunk of a larger volume passes the
    # global grid's starts that reach into it, shifted to the chunk's origin
    axis_starts: tuple[tuple[int, ...] | None, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.shape) != len(self.tile):
            raise ValueError(f"a {len(self.tile)}D tile {self.tile} for a section of shape {self.shape}")

    @property
    def padded(self) -> tuple[int, ...]:
        return tuple(max(n, t) for n, t in zip(self.shape, self.tile, strict=True))

    @property
    def starts(self) -> list[tuple[int, ...]]:
        axes = [tile_starts(n, t, self.overlap) for n, t in zip(self.padded, self.tile, strict=True)]
        for i, given in enumerate(self.axis_starts or ()):
            if given is not None:
                axes[i] = list(given)
        return [
            tuple(int(v) for v in s)
            for s in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
        ]

    @property
    def weights(self) -> np.ndarray:
        return gaussian_weights(self.tile, self.sigma_scale)

    def weight_sum(self) -> np.ndarray:
        """``sum_tiles w`` over the padded section (the same for every section of this shape)."""
        total = np.zeros(self.padded, dtype=np.float32)
        w = self.weights
        for start in self.starts:
            total[self._region(start)] += w
        return total

    def _region(self, start: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(slice(s, s + t) for s, t in zip(start, self.tile, strict=True))


def _pad(sections: np.ndarray, plan: TilePlan) -> np.ndarray:
    widths = [(0, 0)] + [(0, p - n) for n, p in zip(plan.shape, plan.padded, strict=True)]
    if all(w == (0, 0) for w in widths):
        return sections
    if min(plan.shape) < 2:
        return np.pad(sections, widths, mode="edge")
    return np.pad(sections, widths, mode="reflect")


def iter_tiles(
    n_sections: int, plan: TilePlan, batch_size: int
) -> Iterator[list[tuple[int, tuple[int, ...]]]]:
    """Batches of ``(section, tile start)`` in section-major order."""
    batch: list[tuple[int, tuple[int, ...]]] = []
    starts = plan.starts
    for i in range(n_sections):
        for start in starts:
            batch.append((i, start))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def blend_sections(
    sections: np.ndarray,
    run: RunTiles,
    tile: Sequence[int],
    *,
    overlap: float = DEFAULT_OVERLAP,
    num_classes: int,
    batch_size: int = 64,
    normalise: Callable[[np.ndarray], np.ndarray] | None = None,
    on_batch: Callable[[np.ndarray, np.ndarray, np.ndarray, list], None] | None = None,
    sigma_scale: float = SIGMA_SCALE,
    axis_starts: Sequence[Sequence[int] | None] | None = None,
    prefetch: bool = False,
) -> np.ndarray:
    """Blended class probabilities ``[k, C, *spatial]`` (float32) of ``sections [k, *spatial]``.

    ``tile`` gives the tile size along the trailing ``len(tile)`` axes (the axes tiled); ``run`` scores a
    batch of at most ``batch_size`` tiles ``[N, 1, *tile]``; ``normalise`` (raw amplitudes -> what ``run``
    takes) is applied to each batch of tiles cut from the raw sections. ``on_batch(raw_tiles, probabilities,
    embedding, where)`` is called after every batch (inference log, progress); ``where`` lists
    ``(section, tile start)``. ``axis_starts``: explicit tile starts per tiled axis (``None`` for the regular
    grid of an axis); positions no tile covers are NaN. ``prefetch``: call ``run`` in a worker thread, one
    batch ahead of the blending (``run`` must then not rely on the caller's thread state, such as torch's
    ``no_grad``); the result is the same.
    """
    sections = np.asarray(sections)
    tile = tuple(int(t) for t in tile)
    if sections.ndim != len(tile) + 1:
        raise ValueError(f"sections of shape {sections.shape} for {len(tile)}D tiles {tile}: expected "
                         f"[k, {', '.join('n' for _ in tile)}]")  # fmt: skip
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    explicit = (
        None
        if axis_starts is None
        else tuple(None if a is None else tuple(int(v) for v in a) for a in axis_starts)
    )
    plan = TilePlan(tuple(int(n) for n in sections.shape[1:]), tile, float(overlap), sigma_scale, explicit)
    padded = _pad(sections, plan)
    weights = plan.weights
    acc = np.zeros((len(sections), num_classes, *plan.padded), dtype=np.float32)

    def cut(batch: list) -> tuple[np.ndarray, np.ndarray]:
        raw = np.stack([padded[(i, *plan._region(start))] for i, start in batch]).astype(
            np.float32, copy=False
        )
        tiles = (normalise(raw) if normalise is not None else raw)[:, None]
        return raw, np.ascontiguousarray(tiles, dtype=np.float32)

    def add(batch: list, raw: np.ndarray, outputs: tuple[np.ndarray, np.ndarray]) -> None:
        probabilities, embedding = outputs
        if probabilities.shape[:2] != (len(batch), num_classes) or probabilities.shape[2:] != tile:
            raise ValueError(
                f"the model returned probabilities of shape {list(probabilities.shape)} for {len(batch)} "
                f"tiles {list(tile)}; expected [{len(batch)}, {num_classes}, {', '.join(map(str, tile))}]"
            )
        weighted = probabilities * weights  # one vectorised pass for the batch, then a sum per tile
        for j, (i, start) in enumerate(batch):
            acc[(i, slice(None), *plan._region(start))] += weighted[j]
        if on_batch is not None:
            on_batch(raw, probabilities, embedding, batch)

    if prefetch:
        # the next batch runs in a worker thread (onnxruntime and torch release the GIL) while this thread
        # adds up the previous one and cuts the one after: at ~1 M samples/s the numpy work around the net
        # is a quarter of the time, and it no longer waits for the net nor the net for it
        with ThreadPoolExecutor(1, thread_name_prefix="blend") as pool:
            pending = None
            for batch in iter_tiles(len(sections), plan, batch_size):
                raw, tiles = cut(batch)
                running = (batch, raw, pool.submit(run, tiles))
                if pending is not None:
                    add(pending[0], pending[1], pending[2].result())
                pending = running
            if pending is not None:
                add(pending[0], pending[1], pending[2].result())
    else:
        for batch in iter_tiles(len(sections), plan, batch_size):
            raw, tiles = cut(batch)
            add(batch, raw, run(tiles))
    with np.errstate(invalid="ignore", divide="ignore"):
        acc /= plan.weight_sum()
    crop = (slice(None), slice(None), *(slice(0, n) for n in plan.shape))
    return acc[crop]


def class_argmax(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(argmax, max)`` over axis 1 (the classes) of ``probabilities [N, C, ...]``, ties to the first class.

    One pass per class over contiguous planes, where numpy's ``argmax(axis=1)`` walks the class axis with a
    stride (the largest piece of numpy work left around the net in blended scoring before this).
    """
    p = np.asarray(probabilities)
    top = p[:, 0].copy()
    classes = np.zeros(top.shape, dtype=np.int64)
    for c in range(1, p.shape[1]):
        np.copyto(classes, c, where=p[:, c] > top)
        np.maximum(top, p[:, c], out=top)
    return classes, top


def summarise_tiles(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """One row per tile of dense ``probabilities [N, C, ...]``, as the inference log and the reference
    profile hold dense models: ``class`` (the tile's majority class), ``probabilities`` [N, C] (averaged
    over its samples), ``class_shares`` [N, C] (the share of its samples given each class) and
    ``mean_max_probability`` [N]."""
    n, c = probabilities.shape[:2]
    flat = np.asarray(probabilities).reshape(n, c, -1)
    labels, top = class_argmax(flat)
    shares = np.stack([(labels == k).mean(axis=1) for k in range(c)], axis=1)
    return {
        "class": shares.argmax(axis=1).astype(np.int64),
        "probabilities": flat.mean(axis=2, dtype=np.float64).astype(np.float32),
        "class_shares": shares.astype(np.float32),
        "mean_max_probability": top.mean(axis=1).astype(np.float32),
    }

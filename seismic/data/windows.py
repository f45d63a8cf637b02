"""Windows around centre samples, leak-free inline-block splits, and train-only normalisation.

Numpy only (no torch), so serving and batch scoring cut windows with exactly the code training used.

A 1D window is ``[1, T]``: ``T`` samples of one trace around sample ``t``. A 2D patch is ``[1, W, T]``: ``W``
neighbouring traces along the inline (crossline index varies) or along the crossline (inline index varies)
around the centre trace. The centre sits at index ``T // 2`` (and ``W // 2``), so for even sizes there is one
more sample before the centre than after it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import numpy as np

PadMode = Literal["reflect", "edge", "constant", "valid"]
PAD_MODES = ("reflect", "edge", "constant", "valid")
SPLITS = ("train", "val", "test")
# windows drawn per split; training draws an equal share per class, evaluation keeps the survey's class mix
SAMPLING_DEFAULTS = {
    "train": 20000,
    "val": 4000,
    "test": 4000,
    "balance_train": True,
    "resample_train": False,
    "seed": 0,
    # segmentation only: this share of the training tiles runs along the other axis than window.axis
    # (inline-axis tiles see crossline sections' geology too, and vice versa), inside the same blocks
    "cross_axis_fraction": 0.0,
}
NORMALISATION_DEFAULTS = {"max_traces": 4096, "clip_sigma": 5.0}
# target of samples with no label (constant padding in segmentation tiles): cross-entropy's default
# ignore_index, skipped by the loss and the metrics
IGNORE_INDEX = -100


def _from_mapping(cls: type, mapping: Mapping[str, Any], what: str) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(mapping) - known)
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown}; expected a subset of {sorted(known)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}
    return cls(**values)


@dataclass(frozen=True)
class WindowSpec:
    """Shape and edge handling of the windows a model sees.

    ``pad_mode`` says what happens where a window reaches past the volume (or the split) edge: ``reflect``
    mirrors the data without repeating the edge sample, ``edge`` repeats it, ``constant`` fills zeros, and
    ``valid`` never pads: centres are drawn only where the whole window fits.
    """

    length: int = 64
    width: int = 1
    axis: Literal["inline", "crossline"] = "inline"
    pad_mode: PadMode = "reflect"

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"window.length must be >= 1, got {self.length}")
        if self.width < 1:
            raise ValueError(f"window.width must be >= 1, got {self.width}")
        if self.axis not in ("inline", "crossline"):
            raise ValueError(f"window.axis must be 'inline' or 'crossline', got {self.axis!r}")
        if self.pad_mode not in PAD_MODES:
            raise ValueError(f"window.pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> WindowSpec:
        return _from_mapping(cls, mapping, "window")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ndim(self) -> int:
        return 1 if self.width == 1 else 2

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (1, self.length) if self.width == 1 else (1, self.width, self.length)

    @property
    def time_offsets(self) -> np.ndarray:
        return np.arange(self.length) - self.length // 2

    @property
    def trace_offsets(self) -> np.ndarray:
        return np.arange(self.width) - self.width // 2


def _map_indices(idx: np.ndarray, lo: int, hi: int, mode: PadMode) -> tuple[np.ndarray, np.ndarray | None]:
    """Map indices onto [lo, hi) by the pad mode; also return the mask of outside positions for 'constant'."""
    n = hi - lo
    if mode == "valid":
        if idx.size and (idx.min() < lo or idx.max() >= hi):
            raise ValueError(f"pad_mode 'valid': a window reaches outside [{lo}, {hi}); draw centres with it")
        return idx, None
    if mode == "reflect" and n > 1:
        period = 2 * (n - 1)
        rel = np.abs(idx - lo) % period
        return lo + np.where(rel >= n, period - rel, rel), None
    clipped = np.clip(idx, lo, hi - 1)
    if mode == "constant":
        return clipped, (idx < lo) | (idx >= hi)
    return clipped, None


def window_trace_indices(
    il: np.ndarray, xl: np.ndarray, spec: WindowSpec, shape: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The (inline, crossline) positions each window reads: two ``[n, W]`` arrays and an outside mask."""
    il = np.asarray(il)[:, None]
    xl = np.asarray(xl)[:, None]
    off = spec.trace_offsets[None, :]
    if spec.axis == "inline":
        xl_idx, mask = _map_indices(xl + off, 0, shape[1], spec.pad_mode)
        return np.broadcast_to(il, xl_idx.shape), xl_idx, mask
    il_idx, mask = _map_indices(il + off, 0, shape[0], spec.pad_mode)
    return il_idx, np.broadcast_to(xl, il_idx.shape), mask


def extract_windows(
    volume: np.ndarray, il: np.ndarray, xl: np.ndarray, t: np.ndarray, spec: WindowSpec
) -> np.ndarray:
    """Cut windows around centres ``(il, xl, t)`` of ``volume [n_il, n_xl, n_t]``: float32 ``[n, 1, (W,) T]``.

    Works on memory-mapped volumes without reading more than the traces it needs.
    """
    return _gather(volume, il, xl, t, spec, np.float32, 0.0)[:, None]


def extract_label_windows(
    labels: np.ndarray, il: np.ndarray, xl: np.ndarray, t: np.ndarray, spec: WindowSpec
) -> np.ndarray:
    """The label of every sample of the windows :func:`extract_windows` cuts at the same centres:
    int64 ``[n, (W,) T]`` (dense segmentation targets). Samples of a window that lie past the edge take the
    label of the sample the pad mode reads there (``reflect``/``edge``), or :data:`IGNORE_INDEX` under
    ``constant`` padding (zeros were made up there: no facies to learn)."""
    return _gather(labels, il, xl, t, spec, np.int64, IGNORE_INDEX)


def _gather(
    volume: np.ndarray,
    il: np.ndarray,
    xl: np.ndarray,
    t: np.ndarray,
    spec: WindowSpec,
    dtype: type,
    outside: float,
) -> np.ndarray:
    """``[n, (W,) T]`` values of ``volume`` around the centres; ``outside`` where constant padding fills."""
    il_idx, xl_idx, trace_mask = window_trace_indices(il, xl, spec, volume.shape)
    t_idx, time_mask = _map_indices(
        np.asarray(t)[:, None] + spec.time_offsets[None, :], 0, volume.shape[2], spec.pad_mode
    )
    out = np.asarray(volume[il_idx[:, :, None], xl_idx[:, :, None], t_idx[:, None, :]], dtype=dtype)
    if trace_mask is not None:
        out[trace_mask] = outside
    if time_mask is not None:
        out[np.broadcast_to(time_mask[:, None, :], out.shape)] = outside
    return out[:, 0, :] if spec.width == 1 else out


@dataclass(frozen=True)
class SplitSpec:
    """Contiguous inline blocks per split, in ``order``, with ``gap`` inlines left out between blocks.

    Whole inline blocks keep neighbouring (strongly correlated) traces out of different splits; the gap
    widens that margin. Windows of one split only read traces of its own block, so nothing overlaps.
    """

    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)
    gap: int = 4
    order: tuple[str, str, str] = SPLITS

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or min(self.fractions) <= 0:
            raise ValueError(f"split.fractions must be three positive numbers, got {self.fractions}")
        if sorted(self.order) != sorted(SPLITS):
            raise ValueError(f"split.order must be a permutation of {SPLITS}, got {self.order}")
        if self.gap < 0:
            raise ValueError(f"split.gap must be >= 0, got {self.gap}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> SplitSpec:
        return _from_mapping(cls, mapping, "split")

    def to_dict(self) -> dict[str, Any]:
        return {"fractions": list(self.fractions), "gap": self.gap, "order": list(self.order)}

    def blocks(self, n_inlines: int) -> dict[str, tuple[int, int]]:
        """Positional ``[start, stop)`` inline range of each split."""
        usable = n_inlines - 2 * self.gap
        weights = np.asarray(self.fractions, dtype=float) / sum(self.fractions)
        fraction_of = dict(zip(SPLITS, weights, strict=True))
        sizes = [round(usable * fraction_of[name]) for name in self.order]
        sizes[-1] = usable - sum(sizes[:-1])
        if min(sizes) < 1:
            raise ValueError(
                f"split: {n_inlines} inlines cannot hold three blocks of fractions {self.fractions} "
                f"with gap {self.gap}"
            )
        out, start = {}, 0
        for name, size in zip(self.order, sizes, strict=True):
            out[name] = (start, start + size)
            start += size + self.gap
        return out


@dataclass(frozen=True)
class Normalisation:
    """Amplitude scaling fitted on the training block only; travels with the model to serving."""

    mean: float
    std: float
    clip_sigma: float | None = 5.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        out = (np.asarray(x, dtype=np.float32) - np.float32(self.mean)) / np.float32(self.std)
        if self.clip_sigma is not None:
            np.clip(out, -self.clip_sigma, self.clip_sigma, out=out)
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Normalisation:
        return _from_mapping(cls, mapping, "normalisation")


def fit_normalisation(
    blocks: np.ndarray | Sequence[np.ndarray],
    *,
    max_traces: int = 4096,
    clip_sigma: float | None = 5.0,
    seed: int = 0,
) -> Normalisation:
    """Mean/std of a random subset of the traces of one block or of several (an equal share from each):
    bounded reads on memory-mapped surveys."""
    blocks = [blocks] if isinstance(blocks, np.ndarray) else list(blocks)
    if not blocks:
        raise ValueError("normalisation: no training block to fit on")
    rng = np.random.default_rng(seed)
    parts = []
    for block in blocks:
        n_il, n_xl, _ = block.shape
        n = min(max(1, max_traces // len(blocks)), n_il * n_xl)
        flat = np.sort(rng.choice(n_il * n_xl, size=n, replace=False))
        parts.append(np.asarray(block[flat // n_xl, flat % n_xl], dtype=np.float64))
    traces = np.concatenate(parts)
    std = float(traces.std())
    if not np.isfinite(std) or std == 0.0:
        raise ValueError("normalisation: training block has zero or non-finite amplitude spread")
    return Normalisation(mean=float(traces.mean()), std=std, clip_sigma=clip_sigma)


def valid_centre_ranges(shape: tuple[int, int, int], spec: WindowSpec) -> list[tuple[int, int]]:
    """Per axis ``[lo, hi)`` of centres whose windows are legal under the pad mode."""
    ranges = [(0, shape[0]), (0, shape[1]), (0, shape[2])]
    if spec.pad_mode != "valid":
        return ranges
    t_before, w_before = spec.length // 2, spec.width // 2
    ranges[2] = (t_before, shape[2] - (spec.length - t_before - 1))
    axis = 1 if spec.axis == "inline" else 0
    ranges[axis] = (w_before, shape[axis] - (spec.width - w_before - 1))
    if any(hi <= lo for lo, hi in ranges):
        raise ValueError(f"pad_mode 'valid': no centre of block {shape} fits a {spec.sample_shape} window")
    return ranges


def sample_centres(
    labels: np.ndarray,
    n: int,
    spec: WindowSpec,
    *,
    balance: bool,
    seed: int | Sequence[int],
    oversample: int = 20,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``n`` centres ``(il, xl, t)`` in a label block ``[n_il, n_xl, n_t]``.

    Without ``balance`` centres are uniform over the legal region (the survey's own class mix, right for
    evaluation). With it, each present class gets an equal share, drawn from a uniform candidate pool of
    ``oversample * n`` positions so that even a survey far larger than memory is sampled with bounded reads;
    a class too rare for its share in the pool is drawn with replacement.
    """
    if n < 1:
        raise ValueError(f"sampling: number of windows must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    ranges = valid_centre_ranges(labels.shape, spec)
    pool = n * oversample if balance else n
    coords = [rng.integers(lo, hi, size=pool) for lo, hi in ranges]
    if not balance:
        return coords[0], coords[1], coords[2]
    classes = np.asarray(labels[coords[0], coords[1], coords[2]])
    present = np.unique(classes)
    share = np.full(len(present), n // len(present))
    share[: n - share.sum()] += 1
    chosen = []
    for cls, k in zip(present, share, strict=True):
        members = np.flatnonzero(classes == cls)
        chosen.append(rng.choice(members, size=k, replace=members.size < k))
    pick = rng.permutation(np.concatenate(chosen))
    return coords[0][pick], coords[1][pick], coords[2][pick]

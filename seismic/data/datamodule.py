"""LightningDataModule: cached survey(s) -> inline-block splits -> window datasets.

Several surveys (``data.survey.seed=[0,1,2]``) are split alike; each split draws an equal share of its
windows from its block of every survey, and the normalisation is fitted on all training blocks together.
Datasets hold survey folders' paths, not their arrays, and memory-map them lazily in whichever process reads
first: a ``np.memmap`` would otherwise be pickled whole into every DataLoader worker.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from numbers import Integral
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seismic.data.acquisition import AcquisitionRanges, Augmentation
from seismic.data.sources import materialise_surveys
from seismic.data.survey import Survey, read_survey_meta
from seismic.data.synthetic import SyntheticSurveyConfig
from seismic.data.windows import (
    NORMALISATION_DEFAULTS,
    SAMPLING_DEFAULTS,
    SPLITS,
    Normalisation,
    SplitSpec,
    WindowSpec,
    extract_label_windows,
    extract_windows,
    fit_normalisation,
    sample_centres,
)


class WindowDataset(Dataset):
    """Windows of one split, drawn from one inline block ``[lo, hi)`` of each of one or more surveys.

    ``parts[p]`` is ``(survey folder, (lo, hi))``; window ``i`` lies in part ``part[i]`` at the block-local
    centre ``(il[i], xl[i], t[i])``.

    ``dense``: batches carry the label of every sample of each window (segmentation tiles, ``[n, (W,) T]``,
    see :func:`extract_label_windows`) instead of the centre's; ``cross[i]`` true cuts window ``i`` along the
    other axis than ``spec.axis`` (2D tiles only; same block, so the splits stay apart).
    """

    def __init__(
        self,
        parts: Sequence[tuple[str | Path, tuple[int, int]]],
        part: np.ndarray,
        centres: tuple[np.ndarray, np.ndarray, np.ndarray],
        spec: WindowSpec,
        normalisation: Normalisation,
        augmentation: Augmentation | None = None,
        seed: int | Sequence[int] = 0,
        *,
        dense: bool = False,
        cross: np.ndarray | None = None,
        dt_ms: float | None = None,
    ) -> None:
        self.parts = [(Path(folder), (int(lo), int(hi))) for folder, (lo, hi) in parts]
        self.part = np.asarray(part, dtype=np.int64)
        self.il, self.xl, self.t = (np.asarray(c, dtype=np.int64) for c in centres)
        if not len(self.part) == len(self.il) == len(self.xl) == len(self.t):
            raise ValueError("WindowDataset: part and centre arrays differ in length")
        self.spec = spec
        self.normalisation = normalisation
        self.dense = bool(dense)
        self.cross = None if cross is None or not np.any(cross) else np.asarray(cross, dtype=bool)
        if self.cross is not None and (spec.width == 1 or len(self.cross) != len(self.il)):
            raise ValueError("WindowDataset: cross-axis windows need 2D windows and one flag per window")
        other = "crossline" if spec.axis == "inline" else "inline"
        self.cross_spec = WindowSpec(spec.length, spec.width, other, spec.pad_mode)
        self.augmentation = augmentation or Augmentation()
        self.dt_ms = dt_ms  # the spectral augmentations' sample interval
        self.seed = [int(seed)] if isinstance(seed, Integral) else [int(s) for s in seed]
        self._rng: np.random.Generator | None = None
        self._surveys: dict[int, Survey] = {}

    def __len__(self) -> int:
        return len(self.il)

    def arrays(self, part: int) -> tuple[np.ndarray, np.ndarray]:
        """Amplitudes and labels of a part's block (memory-mapped on first use in this process)."""
        if part not in self._surveys:
            self._surveys[part] = Survey.load(self.parts[part][0], mmap=True)
        survey, (lo, hi) = self._surveys[part], self.parts[part][1]
        return survey.amplitudes[lo:hi], survey.labels[lo:hi]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_surveys": {}, "_rng": None}

    def _augment_rng(self) -> np.random.Generator:
        # Drawn lazily so that each DataLoader worker (a copy of this dataset) gets a stream of its own.
        if self._rng is None:
            worker = torch.utils.data.get_worker_info()
            self._rng = np.random.default_rng([*self.seed, worker.id if worker is not None else 0])
        return self._rng

    def raw(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows (before normalisation) and centre labels, as numpy: one vectorised gather per part."""
        idx = np.asarray(indices, dtype=np.int64)
        parts = self.part[idx]
        windows = np.empty((len(idx), *self.spec.sample_shape), dtype=np.float32)
        targets = np.empty(len(idx), dtype=np.int64)
        for p in np.unique(parts):
            rows = np.flatnonzero(parts == p) if len(self.parts) > 1 else slice(None)
            sel = idx[rows]
            amplitudes, labels = self.arrays(int(p))
            windows[rows] = extract_windows(amplitudes, self.il[sel], self.xl[sel], self.t[sel], self.spec)
            targets[rows] = labels[self.il[sel], self.xl[sel], self.t[sel]]
        return windows, targets

    def dense_raw(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windows (before normalisation) and the label of each of their samples ``[n, (W,) T]``."""
        idx = np.asarray(indices, dtype=np.int64)
        windows = np.empty((len(idx), *self.spec.sample_shape), dtype=np.float32)
        targets = np.empty((len(idx), *self.spec.sample_shape[1:]), dtype=np.int64)
        cross = self.cross[idx] if self.cross is not None else np.zeros(len(idx), dtype=bool)
        for p in np.unique(self.part[idx]):
            amplitudes, labels = self.arrays(int(p))
            for flag, spec in ((False, self.spec), (True, self.cross_spec)):
                rows = np.flatnonzero((self.part[idx] == p) & (cross == flag))
                if rows.size == 0:
                    continue
                sel = idx[rows]
                centre = (self.il[sel], self.xl[sel], self.t[sel])
                windows[rows] = extract_windows(amplitudes, *centre, spec)
                targets[rows] = extract_label_windows(labels, *centre, spec)
        return windows, targets

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once: one vectorised gather instead of ``batch_size`` small ones."""
        windows, targets = self.dense_raw(indices) if self.dense else self.raw(indices)
        windows = self.augmentation.apply(windows, self._augment_rng(), self.dt_ms)
        return torch.from_numpy(self.normalisation.apply(windows)), torch.from_numpy(targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def global_centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(part, il, xl, t)`` with inline positions of the whole survey instead of the block."""
        lo = np.array([block[0] for _, block in self.parts], dtype=np.int64)
        return self.part, self.il + lo[self.part], self.xl, self.t


def _pass_through(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


class SeismicDataModule(L.LightningDataModule):
    """Every knob comes from the ``data`` config group; see ``configs/data/*.yaml``."""

    def __init__(
        self,
        source: str = "synthetic",
        cache_dir: str | Path = "data/cache",
        survey: Mapping[str, Any] | None = None,
        segy: Mapping[str, Any] | None = None,
        window: Mapping[str, Any] | None = None,
        split: Mapping[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        normalisation: Mapping[str, Any] | None = None,
        acquisition: Mapping[str, Any] | None = None,
        augment: Mapping[str, Any] | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
        dense: bool = False,
    ) -> None:
        """``dense``: segmentation targets (every sample of each window); the model's task decides it
        (:func:`seismic.pipeline.train.build_datamodule`), not the data config."""
        super().__init__()
        self.dense = bool(dense)
        self.source = source
        self.cache_dir = Path(cache_dir)
        self.survey_options = dict(survey or {})
        self.segy_options = dict(segy or {})
        self.window = WindowSpec.from_mapping(dict(window or {}))
        self.split = SplitSpec.from_mapping(dict(split or {}))
        unknown = sorted(set(sampling or {}) - set(SAMPLING_DEFAULTS))
        if unknown:
            raise ValueError(f"data.sampling: unknown key(s) {unknown}; expected {sorted(SAMPLING_DEFAULTS)}")
        self.sampling = {**SAMPLING_DEFAULTS, **dict(sampling or {})}
        unknown = sorted(set(normalisation or {}) - set(NORMALISATION_DEFAULTS))
        if unknown:
            raise ValueError(
                f"data.normalisation: unknown key(s) {unknown}; expected {sorted(NORMALISATION_DEFAULTS)}"
            )
        self.normalisation_options = {**NORMALISATION_DEFAULTS, **dict(normalisation or {})}
        self.acquisition = dict(acquisition or {})
        AcquisitionRanges.from_mapping(self.acquisition)  # a bad range fails here, before any survey is built
        self.augmentation = self._augmentation(Augmentation.from_mapping(augment))
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.survey_dirs: list[Path] = []
        self.meta: dict[str, Any] = {}
        self.blocks: list[dict[str, tuple[int, int]]] = []  # per survey
        self.normalisation: Normalisation | None = None
        self.datasets: dict[str, WindowDataset] = {}
        self._surveys: list[Survey] = []
        self._train_epoch = 0  # the epoch whose windows datasets["train"] holds

    def prepare_data(self) -> None:
        self.survey_dirs = materialise_surveys(
            self.source,
            self.cache_dir,
            survey=self.survey_options,
            segy=self.segy_options,
            acquisition=self.acquisition,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if not self.survey_dirs:
            self.prepare_data()
        self.meta = merged_meta([read_survey_meta(d) for d in self.survey_dirs], self.survey_dirs)
        surveys = self._surveys = [Survey.load(d, mmap=True) for d in self.survey_dirs]
        for folder, survey in zip(self.survey_dirs, surveys, strict=True):
            if survey.labels is None:
                raise ValueError(f"{folder}: the survey has no label volume; training needs labels")
        self.blocks = [self.split.blocks(survey.shape[0]) for survey in surveys]
        train_blocks = [s.amplitudes[slice(*b["train"])] for s, b in zip(surveys, self.blocks, strict=True)]
        self.normalisation = fit_normalisation(
            train_blocks,
            max_traces=int(self.normalisation_options["max_traces"]),
            clip_sigma=self.normalisation_options["clip_sigma"],
            seed=int(self.sampling["seed"]),
        )
        for offset, name in enumerate(SPLITS):
            self.datasets[name] = self._split_dataset(name, offset, surveys)

    def _split_dataset(self, name: str, offset: int, surveys: list[Survey], epoch: int = 0) -> WindowDataset:
        """``epoch`` > 0 draws another set of centres from the same blocks (``sampling.resample_train``)."""
        n = int(self.sampling[name])
        shares = np.full(len(surveys), n // len(surveys))
        shares[: n - shares.sum()] += 1
        parts, centres = [], []
        for p, survey in enumerate(surveys):
            lo, hi = self.blocks[p][name]
            parts.append((self.survey_dirs[p], (lo, hi)))
            centres.append(
                sample_centres(
                    survey.labels[lo:hi],
                    int(shares[p]),
                    self.window,
                    balance=bool(self.sampling["balance_train"]) and name == "train",
                    seed=epoch_seed(int(self.sampling["seed"]) + offset + len(SPLITS) * p, epoch),
                )
            )
        cross = None
        fraction = float(self.sampling["cross_axis_fraction"])
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"data.sampling.cross_axis_fraction must be in [0, 1], got {fraction}")
        if self.dense and name == "train" and fraction > 0 and self.window.width > 1:
            rng = np.random.default_rng(epoch_seed(int(self.sampling["seed"]) + 97, epoch))
            cross = rng.random(n) < fraction
        return WindowDataset(
            parts,
            np.repeat(np.arange(len(surveys)), shares),
            tuple(np.concatenate([c[axis] for c in centres]) for axis in range(3)),
            self.window,
            self.normalisation,
            augmentation=self.augmentation if name == "train" else None,
            seed=epoch_seed(int(self.sampling["seed"]), epoch) if name == "train" else 0,
            dense=self.dense,
            cross=cross,
            dt_ms=self._spectral_dt(surveys) if name == "train" else None,
        )

    def _spectral_dt(self, surveys: list[Survey]) -> float | None:
        if not self.augmentation.spectral:
            return None
        intervals = sorted({float(s.dt_ms) for s in surveys})
        if len(intervals) > 1:
            raise ValueError(
                f"data.augment: re-imaging needs one sample interval; the training surveys have "
                f"{intervals} ms"
            )
        return intervals[0]

    def _augmentation(self, augmentation: Augmentation) -> Augmentation:
        """``augmentation`` with the data's own wavelet peak filled in, or refused where it is unknown."""
        if not augmentation.spectral or augmentation.source_peak_hz is not None:
            return augmentation
        if self.source != "synthetic":
            raise ValueError(
                "data.augment.source_peak_hz: re-imaging recorded data needs its dominant frequency (Hz); "
                "set it (the peak of the amplitude spectrum)"
            )
        if augmentation.wavelet_peak_hz is not None and self.acquisition.get("wavelet_peak_hz") is not None:
            raise ValueError(
                "data.augment.wavelet_peak_hz re-images every window from one source peak, while "
                "data.acquisition.wavelet_peak_hz draws a peak per survey: use one of the two"
            )
        peak = self.survey_options.get("wavelet_peak_hz", SyntheticSurveyConfig().wavelet_peak_hz)
        return dataclasses.replace(augmentation, source_peak_hz=float(peak))

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.meta.get("class_names", ()))

    @property
    def data_hash(self) -> str:
        return str(self.meta.get("content_hash", ""))

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.datasets[name],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=_pass_through,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """With ``sampling.resample_train`` every epoch sees fresh windows of the training blocks (the
        Trainer must reload loaders each epoch; ``train()`` sets that): on a fixed 60k-window sample the
        default 2D recipe fitted validation well and an unseen survey worse."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        if self.sampling["resample_train"] and epoch != self._train_epoch:
            self.datasets["train"] = self._split_dataset("train", SPLITS.index("train"), self._surveys, epoch)
            self._train_epoch = epoch
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def epoch_seed(seed: int, epoch: int) -> int | list[int]:
    """Epoch 0 keeps the plain seed, so turning resampling on does not change the first epoch's windows."""
    return seed if epoch == 0 else [seed, epoch]


def merged_meta(metas: list[dict[str, Any]], folders: list[Path]) -> dict[str, Any]:
    """One survey's metadata, or for several: the first one's with a combined hash and provenance."""
    if len(metas) == 1:
        return metas[0]
    for key in ("class_names", "dt_ms"):
        for meta, folder in zip(metas[1:], folders[1:], strict=True):
            if meta.get(key) != metas[0].get(key):
                raise ValueError(
                    f"{folder}: {key} {meta.get(key)!r} differs from {metas[0].get(key)!r} of {folders[0]}; "
                    "surveys trained together must agree"
                )
    hashes = [str(meta.get("content_hash", "")) for meta in metas]
    return {
        **metas[0],
        "content_hash": hashlib.sha256("+".join(hashes).encode()).hexdigest(),
        "provenance": {"surveys": [meta.get("provenance", {}) for meta in metas], "content_hashes": hashes},
    }

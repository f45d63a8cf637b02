"""LightningDataModule: cached survey -> inline-block splits -> window datasets.

Datasets hold the survey folder's path, not its arrays, and memory-map them lazily in whichever process
reads first: a ``np.memmap`` would otherwise be pickled whole into every DataLoader worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seismic.data.sources import materialise_survey
from seismic.data.survey import Survey, read_survey_meta
from seismic.data.windows import (
    NORMALISATION_DEFAULTS,
    SAMPLING_DEFAULTS,
    SPLITS,
    Normalisation,
    SplitSpec,
    WindowSpec,
    extract_windows,
    fit_normalisation,
    sample_centres,
)


class WindowDataset(Dataset):
    """Windows of one split: centres are positions inside the split's inline block ``[lo, hi)``."""

    def __init__(
        self,
        survey_dir: str | Path,
        block: tuple[int, int],
        centres: tuple[np.ndarray, np.ndarray, np.ndarray],
        spec: WindowSpec,
        normalisation: Normalisation,
    ) -> None:
        self.survey_dir = Path(survey_dir)
        self.block = block
        self.il, self.xl, self.t = (np.asarray(c, dtype=np.int64) for c in centres)
        self.spec = spec
        self.normalisation = normalisation
        self._survey: Survey | None = None

    def __len__(self) -> int:
        return len(self.il)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._survey is None:
            self._survey = Survey.load(self.survey_dir, mmap=True)
        lo, hi = self.block
        return self._survey.amplitudes[lo:hi], self._survey.labels[lo:hi]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_survey": None}

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """A whole batch at once: one vectorised gather instead of ``batch_size`` small ones."""
        idx = np.asarray(indices, dtype=np.int64)
        amplitudes, labels = self._arrays()
        windows = extract_windows(amplitudes, self.il[idx], self.xl[idx], self.t[idx], self.spec)
        targets = np.asarray(labels[self.il[idx], self.xl[idx], self.t[idx]], dtype=np.int64)
        return torch.from_numpy(self.normalisation.apply(windows)), torch.from_numpy(targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([index])
        return x[0], y[0]

    def global_centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres in positions of the whole survey."""
        return self.il + self.block[0], self.xl, self.t


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
        batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
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
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.survey_dir: Path | None = None
        self.meta: dict[str, Any] = {}
        self.blocks: dict[str, tuple[int, int]] = {}
        self.normalisation: Normalisation | None = None
        self.datasets: dict[str, WindowDataset] = {}

    def prepare_data(self) -> None:
        self.survey_dir = materialise_survey(
            self.source, self.cache_dir, survey=self.survey_options, segy=self.segy_options
        )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        if self.survey_dir is None:
            self.prepare_data()
        self.meta = read_survey_meta(self.survey_dir)
        survey = Survey.load(self.survey_dir, mmap=True)
        if survey.labels is None:
            raise ValueError(f"{self.survey_dir}: the survey has no label volume; training needs labels")
        self.blocks = self.split.blocks(survey.shape[0])
        lo, hi = self.blocks["train"]
        self.normalisation = fit_normalisation(
            survey.amplitudes[lo:hi],
            max_traces=int(self.normalisation_options["max_traces"]),
            clip_sigma=self.normalisation_options["clip_sigma"],
            seed=int(self.sampling["seed"]),
        )
        for offset, name in enumerate(SPLITS):
            lo, hi = self.blocks[name]
            centres = sample_centres(
                survey.labels[lo:hi],
                int(self.sampling[name]),
                self.window,
                balance=bool(self.sampling["balance_train"]) and name == "train",
                seed=int(self.sampling["seed"]) + offset,
            )
            self.datasets[name] = WindowDataset(
                self.survey_dir, (lo, hi), centres, self.window, self.normalisation
            )

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
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

"""Held-out windows as serving receives them: raw amplitudes, plus the labels at their centres.

Export parity, the reference profile and the promotion gate all need windows a model never trained on, cut
with *that model's* window spec and scaled with *that model's* normalisation (a champion may come from another
survey than the challenger). The windows are read raw from the test split (``WindowDataset.raw``) and each
model's own :class:`Normalisation` is applied to them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from seismic.data.windows import Normalisation


@dataclass(frozen=True)
class HeldOut:
    """``raw [N, 1, (W,) T]`` float32 amplitudes and ``labels [N]`` of the test split of one survey set;
    ``survey [N]`` (position in the survey list) and ``inline [N]`` (position in that survey) say where each
    window lies, so that drift calibration can compare blocks of the reference with each other."""

    raw: np.ndarray
    labels: np.ndarray
    survey: np.ndarray
    inline: np.ndarray
    window: dict[str, Any]
    class_names: tuple[str, ...]
    dt_ms: float
    data_hash: str

    def model_input(self, normalisation: Mapping[str, Any]) -> np.ndarray:
        """The windows scaled as the model with this normalisation expects them."""
        return Normalisation.from_mapping(dict(normalisation)).apply(self.raw)


def held_out(data: Mapping[str, Any], window: Mapping[str, Any] | None, max_windows: int) -> HeldOut:
    """Test-split windows of the survey(s) that ``data`` (the ``data`` config section) describes.

    ``window`` replaces ``data["window"]`` (the window spec the model was trained on). A seeded uniform
    subset of ``max_windows`` windows of the split is taken (over all surveys of a multi-survey split), so
    the same config gives the same windows for every model with the same pad mode.
    """
    return held_out_splits(data, window, {"test": max_windows})["test"]


def held_out_splits(
    data: Mapping[str, Any], window: Mapping[str, Any] | None, sizes: Mapping[str, int]
) -> dict[str, HeldOut]:
    """:func:`held_out` for several splits at once (``{"val": n, "test": m}``: calibration is fitted on
    ``val`` and measured on ``test``), from one data module."""
    from seismic.data.datamodule import SeismicDataModule

    options = copy.deepcopy(dict(data))
    if window is not None:
        options["window"] = dict(window)
    dm = SeismicDataModule(**options)
    dm.prepare_data()
    dm.setup("test")
    out = {}
    for split, max_windows in sizes.items():
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows} for split {split!r}")
        if split not in dm.datasets:
            raise ValueError(f"held_out: split must be one of {sorted(dm.datasets)}, got {split!r}")
        dataset = dm.datasets[split]
        indices = np.arange(len(dataset))
        if len(indices) > max_windows:
            indices = np.sort(np.random.default_rng(0).choice(indices, size=max_windows, replace=False))
        raw, labels = dataset.raw(indices)
        survey, inline, _, _ = dataset.global_centres()
        out[split] = HeldOut(
            raw=raw,
            labels=labels,
            survey=survey[indices],
            inline=inline[indices],
            window=dm.window.to_dict(),
            class_names=tuple(dm.class_names),
            dt_ms=float(dm.meta["dt_ms"]),
            data_hash=dm.data_hash,
        )
    return out

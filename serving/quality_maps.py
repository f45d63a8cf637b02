"""Where in a survey not to trust the model: per-trace maps written beside a batch-scoring run.

:class:`SurveyMaps` watches the chunks :func:`serving.batch.score_segy` scores and writes into ``maps_dir``:

``uncertainty.npy/.png``   ``1 - mean max probability`` over each trace's scored samples ``[n_il, n_xl]``
                           (the probabilities are the calibrated ones when the export fitted a temperature)
``drift.npy/.png``         drift score against the model's reference profile per tile of ``block x block``
                           traces (each trace holds its tile's score): ``k`` windows cut evenly down each
                           trace with the model's window spec, each window's handcrafted features (what the
                           profile holds) as robust z-scores against the reference (``(x - median) /
                           (IQR / 1.349)``, clipped to +-10), averaged over the tile's windows; the score
                           is the mean of the 3 largest ``|mean z|``, divided by the median of the same
                           score over groups of as many reference windows: ~1 looks like the reference,
                           larger has moved. Tiles, not single traces, because a shift that moves a
                           feature by less than its spread (a 90-degree phase rotation moves the phase
                           feature by ~0.8 of its spread) needs tens of windows to stand out
``slice_t<T>.npy/.png``    max probability on the time slice at sample ``T`` (default: the middle sample)
``maps.json``              what each array is, the survey's inline/crossline numbers, summary numbers

Map views are inline (rows) x crossline (columns). Cost: ``windows_per_trace`` feature computations per
trace on top of scoring, and 34 float32 per trace held until the maps are written.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from seismic.data.windows import WindowSpec, extract_windows
from seismic.features import window_features
from seismic.io.atomic import atomic_file
from seismic.io.segy import SegyFile
from seismic.monitoring.profile import ReferenceProfile

log = logging.getLogger(__name__)
_Z_CAP = 10.0
_TOP = 3  # features per trace whose shift makes the drift score


class MapsError(ValueError):
    """The maps cannot be made (no reference profile, a bad option); the message says which."""


class DriftScorer:
    """Drift score of groups of windows: robust feature z-scores against a reference (module docstring)."""

    def __init__(self, profile: ReferenceProfile, dt_ms: float, seed: int = 0) -> None:
        self.features = profile.features
        self.dt_ms = dt_ms
        self.median = np.nanmedian(self.features, axis=0)
        q75, q25 = np.nanpercentile(self.features, [75, 25], axis=0)
        # a feature constant on the reference (zero_fraction of live traces) gets a tiny scale: any change
        # of it is a real change, clipped like every other
        self.scale = np.maximum((q75 - q25) / 1.349, 1e-6 * (np.nanstd(self.features, axis=0) + 1e-12))
        self.seed = seed
        self.groups = profile.survey * (int(profile.inline.max(initial=0)) + 1) + np.maximum(
            profile.inline, 0
        )
        self._reference: dict[int, float] = {}

    def z(self, windows: np.ndarray) -> np.ndarray:
        """``[N, F]`` clipped robust z-scores of the windows' features."""
        return self._z(window_features(windows, self.dt_ms))

    def _z(self, features: np.ndarray) -> np.ndarray:
        z = np.nan_to_num((features - self.median) / self.scale, nan=_Z_CAP)
        return np.clip(z, -_Z_CAP, _Z_CAP).astype(np.float32)

    @staticmethod
    def _moved(mean_z: np.ndarray) -> np.ndarray:
        """Mean of the ``_TOP`` largest ``|mean z|`` of each group: a shift moves a few features
        consistently (a phase rotation: the phase and skewness ones), which averaging all would dilute."""
        return np.sort(np.abs(mean_z), axis=-1)[..., -_TOP:].mean(axis=-1)

    def reference(self, n: int) -> tuple[np.ndarray, float]:
        """``(spread per feature, median score)`` of groups of ``n`` reference windows of one (survey,
        inline). Groups within an inline, not random rows, because a tile's traces are neighbours and share
        their geology; each feature's mean z is divided by how much it varies between such groups, so a
        feature that geology moves anyway (amplitudes between facies) weighs less than one it never moves
        (the phase): the drift calibration's reasoning (:mod:`seismic.monitoring.drift.calibration`)."""
        if n not in self._reference:
            rng = np.random.default_rng(self.seed)
            means = []
            for key in np.unique(self.groups):
                rows = np.flatnonzero(self.groups == key)
                picks = rng.choice(rows, (max(2, len(rows) // n), n), replace=len(rows) < 2 * n)
                means.append(self._z(self.features[picks]).mean(axis=1))
            group_means = np.concatenate(means)
            spread = np.maximum(group_means.std(axis=0), 1e-3)
            self._reference[n] = (spread, float(np.median(self._moved(group_means / spread))))
        return self._reference[n]

    def score(self, mean_z: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Scores of groups with mean z-vectors ``mean_z [..., F]`` over ``n [...]`` windows each."""
        out = np.empty(n.shape)
        for size in np.unique(n):
            spread, median = self.reference(int(size))
            out[n == size] = self._moved(mean_z[n == size] / spread) / median
        return out


class SurveyMaps:
    """Accumulates the maps chunk by chunk (:meth:`observe`), then writes them (:meth:`write`)."""

    def __init__(
        self,
        volume: SegyFile | np.ndarray,
        spec: WindowSpec,
        profile: ReferenceProfile,
        dt_ms: float,
        *,
        windows_per_trace: int = 4,
        block: int = 4,
        time_slice: int | None = None,
    ) -> None:
        shape = tuple(int(n) for n in volume.shape)
        if windows_per_trace < 1 or block < 1:
            raise MapsError(
                f"maps: windows_per_trace and block must be >= 1, got {windows_per_trace}, {block}"
            )
        self.block = block
        slice_at = shape[2] // 2 if time_slice is None else int(time_slice)
        if not 0 <= slice_at < shape[2]:
            raise MapsError(f"maps.time_slice {time_slice} is outside the cube's samples [0, {shape[2]})")
        self.volume, self.spec, self.shape, self.time_slice = volume, spec, shape, slice_at
        half = spec.length // 2
        lo, hi = (half, shape[2] - (spec.length - half - 1)) if shape[2] >= spec.length else (0, shape[2])
        self.t_centres = np.unique(np.linspace(lo, hi - 1, windows_per_trace).round().astype(np.int64))
        self.scorer = DriftScorer(profile, dt_ms)
        self.uncertainty = np.full(shape[:2], np.nan, dtype=np.float32)
        self.mean_z = np.zeros((*shape[:2], len(profile.feature_names)), dtype=np.float32)
        self.slice = np.full(shape[:2], np.nan, dtype=np.float32)

    def observe(
        self, chunks: Iterable[tuple[int, np.ndarray, np.ndarray]]
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Pass the scored chunks ``(start_inline, classes, max_probability)`` through, mapping each."""
        for start, classes, max_prob in chunks:
            self._add(start, classes, max_prob)
            yield start, classes, max_prob

    def _add(self, start: int, classes: np.ndarray, max_prob: np.ndarray) -> None:
        stop = start + len(classes)
        scored = classes >= 0
        count = scored.sum(axis=2)
        total = np.where(scored, max_prob, 0.0).sum(axis=2)
        self.uncertainty[start:stop] = np.where(count > 0, 1.0 - total / np.maximum(count, 1), np.nan)
        self.slice[start:stop] = np.where(
            scored[:, :, self.time_slice], max_prob[:, :, self.time_slice], np.nan
        )
        self.add_drift(start, stop)

    def add_drift(self, start: int, stop: int) -> None:
        """The feature z-scores of the traces on inlines ``[start, stop)``, averaged down each trace."""
        # the neighbour inlines a crossline-axis patch reaches into (an inline-axis one stays on its inline)
        reach = self.spec.width // 2 if self.spec.axis == "crossline" and self.spec.width > 1 else 0
        lo, hi = max(0, start - reach), min(self.shape[0], stop + reach)
        raw = (
            self.volume.read_inlines(lo, hi)
            if isinstance(self.volume, SegyFile)
            else np.asarray(self.volume[lo:hi], np.float32)
        )
        il, xl, t = np.meshgrid(
            np.arange(start, stop) - lo, np.arange(self.shape[1]), self.t_centres, indexing="ij"
        )
        windows = extract_windows(raw, il.ravel(), xl.ravel(), t.ravel(), self.spec)
        self.mean_z[start:stop] = self.scorer.z(windows).reshape(*il.shape, -1).mean(axis=2)

    def drift(self) -> np.ndarray:
        """Per-trace map of the score of each ``block x block`` tile of traces (edge tiles are smaller)."""
        edges = [np.arange(0, n, self.block) for n in self.shape[:2]]
        sums = np.add.reduceat(np.add.reduceat(self.mean_z, edges[0], axis=0), edges[1], axis=1)
        counts = np.outer(np.diff([*edges[0], self.shape[0]]), np.diff([*edges[1], self.shape[1]]))
        tiles = self.scorer.score(sums / counts[..., None], counts * len(self.t_centres))
        full = np.repeat(np.repeat(tiles, self.block, axis=0), self.block, axis=1)
        return full[: self.shape[0], : self.shape[1]].astype(np.float32)

    def write(
        self, folder: str | Path, inlines: np.ndarray | None = None, crosslines: np.ndarray | None = None
    ):
        """Arrays, PNG map views and ``maps.json`` in ``folder``; returns the ``maps.json`` content."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(folder)
        il = np.arange(self.shape[0]) if inlines is None else np.asarray(inlines)
        xl = np.arange(self.shape[1]) if crosslines is None else np.asarray(crosslines)
        views = {
            "uncertainty": (self.uncertainty, "1 - mean max probability per trace", "magma"),
            "drift": (
                self.drift(),
                f"drift score, {self.block}x{self.block}-trace tiles (1: as reference)",
                "viridis",
            ),
            f"slice_t{self.time_slice}": (
                self.slice,
                f"max probability at sample {self.time_slice}",
                "cividis",
            ),
        }
        info: dict[str, Any] = {
            "shape": list(self.shape[:2]),
            "inlines": il.tolist(),
            "crosslines": xl.tolist(),
        }
        for name, (array, title, cmap) in views.items():
            with atomic_file(folder / f"{name}.npy") as tmp, tmp.open("wb") as fh:
                np.save(fh, array)
            fig, ax = plt.subplots(figsize=(6, 4.5))
            image = ax.imshow(
                array, cmap=cmap, aspect="auto", origin="upper",
                extent=(xl[0] - 0.5, xl[-1] + 0.5, il[-1] + 0.5, il[0] - 0.5),
            )  # fmt: skip
            fig.colorbar(image, ax=ax)
            ax.set_xlabel("crossline")
            ax.set_ylabel("inline")
            ax.set_title(title)
            with atomic_file(folder / f"{name}.png") as tmp:
                fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
            plt.close(fig)
            finite = array[np.isfinite(array)]
            info[name] = {
                "title": title,
                "npy": str(folder / f"{name}.npy"),
                "png": str(folder / f"{name}.png"),
                "mean": float(finite.mean()) if finite.size else None,
                "p95": float(np.percentile(finite, 95)) if finite.size else None,
            }
        info["windows_per_trace"], info["block"] = len(self.t_centres), self.block
        with atomic_file(folder / "maps.json") as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        log.info("quality maps written to %s", folder)
        return info


def maps_for(model: Any, volume: SegyFile | np.ndarray, spec: WindowSpec, **options: Any) -> SurveyMaps:
    """:class:`SurveyMaps` for a loaded model (its folder must hold the reference profile)."""
    try:
        profile = ReferenceProfile.load(model.folder)
    except (FileNotFoundError, ValueError, OSError, KeyError) as err:
        raise MapsError(f"maps need the model's reference profile ({model.folder}): {err}") from None
    return SurveyMaps(volume, spec, profile, model.dt_ms or float(profile.info["dt_ms"]), **options)

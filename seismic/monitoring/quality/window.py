"""The monitor's per-window performance section: counts over every row, the estimate, realised metrics.

:class:`PerformanceCounts` accumulates, over all rows of a window (not only its drift sample), the expected
confusion matrix of the CBPE estimate and, for rows whose late label has arrived, the realised confusion
matrix. :meth:`PerformanceCounts.summary` is the window's ``performance`` entry of the drift report::

    {"estimated": {"accuracy", "macro_f1", "recall", "rows", "band": {metric: [p5, p95]}, "sampling_band"},
     "realised": {"accuracy", "macro_f1", "recall", "rows"} | null,      # null: no label came back
     "labelled_rows": int, "labelled_fraction": float,
     "reference": {"estimated": {...}, "realised": {...}}, "max_drop": {kind: {metric: threshold}},
     "judged": {"estimated": {"drop", "dropped"} | null, "realised": ... | null}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from seismic.monitoring.drift.calibration import chunk_ids
from seismic.monitoring.quality.labels import join_online, read_labels
from seismic.monitoring.quality.performance import (
    PerformanceThresholds,
    confusion,
    estimated_metrics,
    expected_confusion,
    fit_thresholds,
    judge,
    metrics,
    widen,
)


@dataclass(frozen=True)
class QualitySettings:
    """``quality`` in ``configs/monitor.yaml``."""

    labels_dir: str | Path | None = None  # late labels (seismic.monitoring.quality.labels); None: none
    z: float = 3.0  # drop threshold: max(largest reference chunk drop, z * RMS chunk drop, min_drop)
    min_drop: float = 0.02
    min_labelled: int = 100  # realised metrics are judged from this many labelled rows in a window
    n_draws: int = 200  # label draws for the estimate's band
    maps_dir: str | Path | None = None  # PNG maps of a batch-scoring run (serving/quality_maps.py) to embed

    def __post_init__(self) -> None:
        if self.z <= 0 or not 0 <= self.min_drop < 1:
            raise ValueError(f"quality: z must be > 0 and min_drop in [0, 1), got {self.z}, {self.min_drop}")
        if self.min_labelled < 1 or self.n_draws < 10:
            raise ValueError(
                "quality: min_labelled must be >= 1 and n_draws >= 10, "
                f"got {self.min_labelled}, {self.n_draws}"
            )

    def labels(self) -> pa.Table | None:
        """The online labels (one per key), read once per monitoring run; None without a label table."""
        if self.labels_dir is None or not (Path(self.labels_dir) / "online").is_dir():
            return None
        return read_labels(self.labels_dir, "online")


def maps(s: QualitySettings) -> list[str]:
    """The PNG maps under ``maps_dir`` (the report embeds them), sorted; none without the folder."""
    folder = Path(s.maps_dir) if s.maps_dir else None
    return sorted(str(p) for p in folder.glob("*.png")) if folder and folder.is_dir() else []


def run_summary(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Answer to "is the model likely worse, and by how much": the latest window with a performance section
    and the windows whose estimate or realised metrics dropped beyond the threshold."""
    judged = [
        (w["window"].get("id"), w["window"]["performance"]) for w in windows if w["window"].get("performance")
    ]
    if not judged:
        return {"windows": 0}
    dropped = {
        kind: [i for i, p in judged if p["judged"].get(kind) and any(p["judged"][kind]["dropped"].values())]
        for kind in ("estimated", "realised")
    }
    latest_id, latest = judged[-1]
    return {
        "windows": len(judged),
        "latest": {
            "id": latest_id,
            "estimated": {m: latest["estimated"][m] for m in ("accuracy", "macro_f1")},
            "estimated_band": latest["estimated"].get("band"),
            "reference_estimated": latest["reference"]["estimated"],
            "realised": None
            if not latest["realised"]
            else {m: latest["realised"][m] for m in ("accuracy", "macro_f1")},
            "labelled_rows": latest["labelled_rows"],
        },
        "dropped_windows": dropped,
    }


def reference_thresholds(
    probabilities: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray | None,
    n_chunks: int,
    s: QualitySettings,
) -> PerformanceThresholds:
    """Thresholds from the profile, chunked exactly as the drift calibration chunks it."""
    chunks = chunk_ids(len(labels), n_chunks, groups)
    return fit_thresholds(probabilities, labels, chunks, z=s.z, min_drop=s.min_drop)


@dataclass
class PerformanceCounts:
    n_classes: int
    expected: np.ndarray = field(init=False)
    realised: np.ndarray = field(init=False)
    rows: int = 0

    def __post_init__(self) -> None:
        self.expected = np.zeros((self.n_classes, self.n_classes))
        self.realised = np.zeros((self.n_classes, self.n_classes))

    def add(self, probabilities: np.ndarray, predicted: np.ndarray, labels: np.ndarray | None) -> None:
        self.rows += len(predicted)
        self.expected += expected_confusion(probabilities, predicted)
        if labels is not None:
            known = labels >= 0
            self.realised += confusion(labels[known], predicted[known], self.n_classes)

    def summary(
        self,
        sample: dict[str, np.ndarray] | None,
        thresholds: PerformanceThresholds,
        class_names: list[str],
        s: QualitySettings,
        seed: int = 0,
    ) -> dict[str, Any] | None:
        if not self.rows:
            return None
        estimated = metrics(self.expected, class_names)
        if sample is not None and len(sample["predictions"]):
            # the uniform sample of all rows (the drift sample also keeps extra rows that have features)
            uniform = sample.get("uniform", np.ones(len(sample["predictions"]), dtype=bool))
            sampled = estimated_metrics(
                sample["probabilities"][uniform], sample["predictions"][uniform], n_draws=s.n_draws, seed=seed
            )
            estimated["sampling_band"] = sampled["band"]
            estimated["band"] = widen(estimated | {"band": sampled["band"]}, thresholds.calibration_sd)
        labelled = int(self.realised.sum())
        realised = metrics(self.realised, class_names) if labelled else None
        return {
            "estimated": estimated,
            "realised": realised,
            "labelled_rows": labelled,
            "labelled_fraction": labelled / self.rows,
            "reference": {
                "estimated": thresholds.reference_estimated,
                "realised": thresholds.reference_realised,
            },
            "max_drop": thresholds.max_drop,
            "judged": judge(estimated, realised, thresholds, s.min_labelled),
        }


def window_labels(labels: pa.Table | None, request_id: np.ndarray, window_index: np.ndarray) -> np.ndarray:
    """The late label of each row, -1 where none arrived (all of them without a label table)."""
    if labels is None or not labels.num_rows:
        return np.full(len(request_id), -1, dtype=np.int64)
    return join_online(labels, request_id, window_index)


def performance_columns(table: pa.Table, n_classes: int, labels: pa.Table | None) -> dict[str, np.ndarray]:
    """The log rows' probabilities ``[N, C]`` and late labels (-1: none), as the window counts take them."""
    flat = table["probabilities"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return {
        "probabilities": np.asarray(flat, dtype=np.float32).reshape(table.num_rows, n_classes),
        "labels": window_labels(
            labels,
            table["request_id"].to_numpy(zero_copy_only=False),
            table["window_index"].to_numpy(zero_copy_only=False),
        ),
    }

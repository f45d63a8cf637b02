"""Performance of a classifier per window: realised (where labels came back) and estimated without labels.

**Realised.** Accuracy, macro-F1 and per-class recall of the predicted classes against the late labels
(:mod:`seismic.monitoring.quality.labels`), from a confusion matrix accumulated over every labelled row of the
window (not a sample), with the number of rows it covers.

**Estimated (CBPE, as NannyML's confidence-based performance estimation).** If the probabilities are
calibrated (``P(true = i | p) = p_i``, what temperature scaling at export aims for: :mod:`seismic.export.
calibration`), the expected confusion matrix of a window is ``E[i, k] = sum of p_i over the rows predicted
k``; accuracy is ``trace(E) / n`` and each class's F1 is ``2 E[k,k] / (row_k + col_k)``, averaged into the
macro-F1 (a plug-in estimate: the F1 of the expected counts, which for hundreds of rows per class differs
from the expected F1 by far less than the band). Like CBPE it holds when the data move *without* changing
``P(true | x)`` (a new facies mix, more of one class): then calibration survives and so does the estimate. A
covariate shift the model was never calibrated for (noise, a phase rotation) breaks calibration, and the
estimate with it (``benchmarks/quality.py`` measures by how much).

**Band.** The 5-95 % range of the realised metrics a calibrated model would give on this window (labels
drawn from each row's probabilities ``n_draws`` times, seeded, the metrics recomputed: the sampling error),
widened by the calibration error measured on the reference chunks (:func:`widen`).

**Alert threshold.** From the reference profile, like the drift thresholds: the reference is cut into the same
chunks of (survey, inline) blocks, each chunk's estimate is compared with the whole reference's, and a drop is
alarming above ``max(largest chunk drop, z * RMS chunk drop, min_drop)``: the estimate varies that much
between parts of the data the model was validated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PerformanceThresholds", "estimated_metrics", "expected_confusion", "fit_thresholds", "metrics"]
METRICS = ("accuracy", "macro_f1")


def confusion(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    return (
        np.bincount(true * n_classes + predicted, minlength=n_classes * n_classes)
        .reshape(n_classes, n_classes)
        .astype(np.float64)
    )


def expected_confusion(probabilities: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """``E[i, k]``: the sum of ``p_i`` over the rows predicted ``k`` (see the module docstring)."""
    n_classes = probabilities.shape[1]
    out = np.zeros((n_classes, n_classes))
    for k in np.unique(predicted):
        out[:, k] = probabilities[predicted == k].sum(axis=0, dtype=np.float64)
    return out


def metrics(matrix: np.ndarray, class_names: list[str] | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1 (over the classes that occur, as true or predicted) and per-class recall of a
    ``[true, predicted]`` matrix of counts or expected counts."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = float(matrix.sum())
    if n <= 0:
        return {"rows": 0, "accuracy": None, "macro_f1": None, "recall": {}}
    tp = np.diag(matrix)
    true, pred = matrix.sum(axis=1), matrix.sum(axis=0)
    present = (true + pred) > 0
    f1 = np.divide(2 * tp, true + pred, out=np.zeros_like(tp), where=present)
    names = class_names or [str(i) for i in range(len(tp))]
    return {
        "rows": int(n) if n.is_integer() else round(n, 3),  # expected counts of an estimate are fractional
        "accuracy": float(tp.sum() / n),
        "macro_f1": float(f1[present].mean()),
        "recall": {names[i]: float(tp[i] / true[i]) for i in range(len(tp)) if true[i] > 0},
    }


def _batched_metrics(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> dict[str, np.ndarray]:
    """Accuracy and macro-F1 of each row of ``true [B, n]`` against ``predicted [n]``, vectorised."""
    draws = true.shape[0]
    flat = (np.arange(draws)[:, None] * n_classes + true) * n_classes + predicted[None, :]
    cm = np.bincount(flat.ravel(), minlength=draws * n_classes * n_classes).reshape(
        draws, n_classes, n_classes
    )
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    support = cm.sum(axis=2) + cm.sum(axis=1)
    present = support > 0
    f1 = np.divide(2 * tp, support, out=np.zeros_like(tp), where=present)
    return {
        "accuracy": tp.sum(axis=1) / true.shape[1],
        "macro_f1": f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1),
    }


def estimated_metrics(
    probabilities: np.ndarray,
    predicted: np.ndarray,
    *,
    class_names: list[str] | None = None,
    n_draws: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """CBPE estimate of accuracy and macro-F1 with its 5-95 % band (module docstring)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or len(p) != len(predicted):
        raise ValueError(f"probabilities must be [N, C] with N = len(predicted), got {p.shape}")
    out = metrics(expected_confusion(p, predicted), class_names)
    if not len(p):
        return out | {"band": None}
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    draws = (rng.random((n_draws, len(p), 1)) > cdf[None]).sum(axis=2)
    sampled = _batched_metrics(np.minimum(draws, p.shape[1] - 1), np.asarray(predicted), p.shape[1])
    out["band"] = {m: [float(np.quantile(v, 0.05)), float(np.quantile(v, 0.95))] for m, v in sampled.items()}
    return out


@dataclass(frozen=True)
class PerformanceThresholds:
    """The reference's estimated (and, where it has labels, realised) metrics and the drop that alarms."""

    reference_estimated: dict[str, float]
    reference_realised: dict[str, float]
    max_drop: dict[str, dict[str, float]]  # {"estimated" | "realised": {metric: drop that alarms}}
    chunk_drops: dict[str, dict[str, list[float]]]
    calibration_sd: dict[str, float]  # sd of (estimate - realised) on reference chunks beyond sampling error

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_estimated": self.reference_estimated,
            "reference_realised": self.reference_realised,
            "max_drop": self.max_drop,
            "chunk_drops": self.chunk_drops,
            "calibration_sd": self.calibration_sd,
        }


def widen(estimate: dict[str, Any], calibration_sd: dict[str, float]) -> dict[str, list[float]]:
    """The 5-95 % band of each metric with the calibration error added to the sampling band in quadrature:
    the sampling band alone says how far a *calibrated* model's realised metric strays, and a model is never
    exactly calibrated on new data (on the reference chunks the excess error is ``calibration_sd``)."""
    out = {}
    for m, (low, high) in estimate["band"].items():
        centre = estimate[m]
        below = np.hypot(centre - low, 1.645 * calibration_sd[m])
        above = np.hypot(high - centre, 1.645 * calibration_sd[m])
        out[m] = [float(centre - below), float(centre + above)]
    return out


def fit_thresholds(
    probabilities: np.ndarray,
    labels: np.ndarray,
    chunks: np.ndarray,
    *,
    z: float = 3.0,
    min_drop: float = 0.02,
) -> PerformanceThresholds:
    """Thresholds on the drop of each metric from the reference profile (module docstring).

    ``chunks``: chunk id per reference row (:func:`seismic.monitoring.drift.calibration.chunk_ids` of the
    profile's (survey, inline) groups); ``labels``: the profile's true classes.
    """
    if z <= 0 or not 0 <= min_drop < 1:
        raise ValueError(f"performance thresholds: z must be > 0 and min_drop in [0, 1), got {z}, {min_drop}")
    p = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, np.int64)
    predicted = p.argmax(axis=1)
    n_classes = p.shape[1]
    whole = {
        "estimated": metrics(expected_confusion(p, predicted)),
        "realised": metrics(confusion(labels, predicted, n_classes)),
    }
    drops: dict[str, dict[str, list[float]]] = {kind: {m: [] for m in METRICS} for kind in whole}
    errors: dict[str, list[float]] = {m: [] for m in METRICS}  # estimate - realised, per chunk
    sampling: dict[str, list[float]] = {m: [] for m in METRICS}  # the sampling variance of that difference
    for c in np.unique(chunks):
        rows = chunks == c
        part = {
            "estimated": estimated_metrics(p[rows], predicted[rows], n_draws=100, seed=int(c)),
            "realised": metrics(confusion(labels[rows], predicted[rows], n_classes)),
        }
        for kind in whole:
            for m in METRICS:
                drops[kind][m].append(float(whole[kind][m] - part[kind][m]))
        for m in METRICS:
            errors[m].append(part["estimated"][m] - part["realised"][m])
            sampling[m].append(
                ((part["estimated"]["band"][m][1] - part["estimated"]["band"][m][0]) / 3.29) ** 2
            )
    max_drop = {
        kind: {m: float(max(max(d), z * np.sqrt(np.mean(np.square(d))), min_drop)) for m, d in per.items()}
        for kind, per in drops.items()
    }
    return PerformanceThresholds(
        reference_estimated={m: float(whole["estimated"][m]) for m in METRICS},
        reference_realised={m: float(whole["realised"][m]) for m in METRICS},
        max_drop=max_drop,
        chunk_drops=drops,
        calibration_sd={
            m: float(np.sqrt(max(0.0, np.mean(np.square(errors[m])) - np.mean(sampling[m])))) for m in METRICS
        },
    )


def judge(
    estimated: dict[str, Any],
    realised: dict[str, Any] | None,
    thresholds: PerformanceThresholds,
    min_labelled: int,
) -> dict[str, Any]:
    """The drop of each metric against the reference and whether it passes the threshold, for the estimate
    and (with at least ``min_labelled`` labelled rows) for the realised metrics."""
    out: dict[str, Any] = {}
    for kind, values, reference in (
        ("estimated", estimated, thresholds.reference_estimated),
        ("realised", realised, thresholds.reference_realised),
    ):
        if (
            values is None
            or values.get("accuracy") is None
            or (kind == "realised" and values["rows"] < min_labelled)
        ):
            out[kind] = None
            continue
        drops = {m: reference[m] - values[m] for m in METRICS}
        out[kind] = {
            "drop": drops,
            "dropped": {m: bool(drops[m] > thresholds.max_drop[kind][m]) for m in METRICS},
        }
    return out

"""Polarity check: are the current data closer to the reference, or to the reference reversed in sign?

A reversed polarity (``x -> -x``: SEG normal against reverse convention, a sign flipped in processing)
leaves every even feature unchanged (spectrum, envelope, RMS, zero crossings, phase): only the odd ones
(:data:`seismic.features.ODD_FEATURE_NAMES`, skewness and the mean) change sign. Their marginal
distributions barely move where facies whose reflectors have opposite typical signs mix: on the drift
benchmark, window skewness flagged half of the reversed windows. Within a predicted class the sign is
consistent, so the check compares class means: ``mu[c, j]`` of odd feature ``j`` over the reference rows
of class ``c``, ``m[c, j]`` over the current rows. The reversed reference has means ``-mu``, and the score

    s = sum(w * m) / sum(w * mu),   w = mu / v   (over the classes with enough rows on both sides)

is 1 when the current means equal the reference's and -1 when they equal the reversed reference's.
``v[c, j]`` is the variance of that class mean between reference chunks (how much it differs between
surveys of the same geology), so a stable class mean far from 0 counts most: Fisher's discriminant between
``+mu`` and ``-mu`` with a diagonal covariance.

Verdict, like every test of the engine: significant AND past an effect threshold. The threshold is
``min(0, mean - z std)`` of the chunk scores (each reference chunk scored against the rest, with the
calibration's ``z``): below 0 the window is closer to the reversed reference than to the reference, and a
reference whose chunks disagree among themselves lowers it further. Significance: a one-sided z-test that
the score is below 0, its standard error from the current rows, so a window with no sign asymmetry of its
own (score ~0: a survey whose reflectors' signs balance, or a 90-degree phase rotation, which removes the
asymmetry) does not count as reversed. A reference with no sign asymmetry gives ``sum(w mu)`` ~0; then the
check reports itself uninformative and never drifts.

Scale: the window means are in amplitude units, so a survey at 2,000x the reference's amplitudes has class
means 2,000x the reference's, and the score reached 126.7 on a real cube (F3 against a model trained at std
~1). Before scoring, those columns (:data:`AMPLITUDE_COLUMNS`) of the current rows are rescaled to the
reference's RMS: a sign reversal keeps the RMS, so the check still sees it, while the score keeps its
range whatever the amplitude scale (which the raw amplitude features report on their own).

Measured (``benchmarks/drift.py``, README): where the raw features flagged about half of the reversed
windows, this check flags most of them with no false alarm; what it misses are surveys whose reflector
signs nearly balance, where a reversed survey looks like an unreversed one of another seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats

from seismic.features import ODD_FEATURE_NAMES
from seismic.monitoring.drift.calibration import chunk_ids
from seismic.monitoring.drift.results import PolarityCheck

_MIN_CHUNK_SCORES = 3
AMPLITUDE_COLUMNS = ("mean", "core_mean")  # odd features in amplitude units (the skewness has none)


@dataclass(frozen=True)
class PolarityModel:
    columns: tuple[int, ...]  # indices of the odd features in the feature matrix
    means: np.ndarray  # [C, J] reference class means (NaN: class too rare)
    weights: np.ndarray  # [C, J] mu / v (0 where undefined)
    threshold: float
    null: tuple[float, ...]  # chunk scores behind the threshold
    min_class_rows: int
    rms: np.ndarray  # [J] reference RMS of the amplitude columns (NaN: a unitless column, left as it is)


def _rms(x: np.ndarray, amplitude: np.ndarray) -> np.ndarray:
    return np.where(amplitude, np.sqrt(np.mean(x * x, axis=0)) if len(x) else np.nan, np.nan)


def _rescaled(x: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """``x`` with its amplitude columns scaled to the reference ``rms`` (all-zero columns left alone)."""
    own = _rms(x, np.isfinite(rms))
    factor = np.divide(rms, own, out=np.ones_like(rms), where=np.isfinite(rms) & (own > 0))
    return x * factor


def _class_means(x: np.ndarray, classes: np.ndarray, n_classes: int, min_rows: int) -> np.ndarray:
    out = np.full((n_classes, x.shape[1]), np.nan)
    counts = np.bincount(classes, minlength=n_classes)
    sums = np.zeros((n_classes, x.shape[1]))
    np.add.at(sums, classes, x)
    enough = counts >= min_rows
    out[enough] = sums[enough] / counts[enough, None]
    return out


def _rows(features: np.ndarray, predictions: np.ndarray | None, columns: tuple[int, ...]):
    """Odd-feature columns, classes (one class without predictions) and the mask of rows finite in all."""
    x = np.asarray(features, dtype=np.float64)[:, list(columns)]
    classes = np.zeros(len(x), dtype=np.int64) if predictions is None else np.asarray(predictions, np.int64)
    keep = np.isfinite(x).all(axis=1)
    return x[keep], classes[keep], keep


def _score(means: np.ndarray, weights: np.ndarray, x: np.ndarray, classes: np.ndarray, min_rows: int):
    """Score and its standard error from the current rows; (nan, nan) when no class is usable."""
    n_classes = len(means)
    current = _class_means(x, classes, n_classes, min_rows)
    usable = np.isfinite(current).all(axis=1) & np.isfinite(means).all(axis=1)
    denominator = float((weights[usable] * means[usable]).sum())
    if not usable.any() or denominator <= 0:
        return float("nan"), float("nan"), 0
    score = float((weights[usable] * current[usable]).sum()) / denominator
    variance = 0.0
    for c in np.flatnonzero(usable):
        projected = x[classes == c] @ weights[c]  # the class's contribution row by row
        variance += projected.var(ddof=1) / len(projected)
    return score, float(np.sqrt(variance)) / denominator, int(usable.sum())


def _ratio_or_nan(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)


def _fit_means(x, classes, n_classes, min_rows, ids) -> tuple[np.ndarray, np.ndarray]:
    means = _class_means(x, classes, n_classes, min_rows)
    per_chunk = np.stack(
        [_class_means(x[ids == k], classes[ids == k], n_classes, min_rows) for k in range(int(ids.max()) + 1)]
    )
    finite = np.isfinite(per_chunk)
    seen = finite.sum(axis=0)  # chunks in which the class had enough rows
    centre = _ratio_or_nan(np.where(finite, per_chunk, 0.0).sum(axis=0), seen)
    centred = np.where(finite, per_chunk - centre, 0.0)
    variance = _ratio_or_nan((centred * centred).sum(axis=0), seen - 1)
    ok = np.isfinite(means) & np.isfinite(variance) & (variance > 0)
    weights = np.zeros(means.shape)
    weights[ok] = means[ok] / variance[ok]
    return means, weights


def fit_polarity(
    feature_names,
    features: np.ndarray,
    predictions: np.ndarray | None,
    n_classes: int,
    groups: np.ndarray | None,
    *,
    n_chunks: int,
    spread: bool = False,
    z: float | None,
    min_class_rows: int,
) -> PolarityModel | None:
    """The check's reference means, weights and threshold; None without odd feature columns.

    Chunks (of ``groups`` when there are at least 3, else of row order; ``spread`` as
    :func:`~seismic.monitoring.drift.calibration.chunk_ids`) weigh the class means; ``z`` None
    (calibration off) leaves the threshold at 0 instead of calibrating it on the chunk scores.
    """
    names = list(feature_names)
    columns = tuple(names.index(n) for n in ODD_FEATURE_NAMES if n in names)
    if not columns:
        return None
    n_classes = 1 if predictions is None else n_classes
    x, classes, keep = _rows(features, predictions, columns)
    amplitude = np.isin([names[j] for j in columns], AMPLITUDE_COLUMNS)
    groups = None if groups is None else np.asarray(groups)[keep]
    n_groups = 0 if groups is None else len(np.unique(groups))
    ids = chunk_ids(len(x), n_chunks, groups if n_groups >= 3 else None, spread=spread and n_groups >= 6)
    means, weights = _fit_means(x, classes, n_classes, min_class_rows, ids)
    null: list[float] = []
    for k in range(int(ids.max()) + 1 if z is not None else 0):
        rest = ids != k
        m, w = _fit_means(x[rest], classes[rest], n_classes, min_class_rows, ids[rest])
        # a chunk is rescaled to the rest's RMS as a current window is to the reference's
        held_out = _rescaled(x[~rest], _rms(x[rest], amplitude))
        s, _, _ = _score(m, w, held_out, classes[~rest], min_class_rows)
        if np.isfinite(s):
            null.append(s)
    if z is None:
        threshold = 0.0
    elif len(null) >= _MIN_CHUNK_SCORES:
        threshold = min(0.0, float(np.mean(null) - z * np.std(null, ddof=1)))
    else:
        threshold = float("nan")  # uninformative: nothing to calibrate on
    return PolarityModel(columns, means, weights, threshold, tuple(null), min_class_rows, _rms(x, amplitude))


def check_polarity(
    model: PolarityModel, features: np.ndarray, predictions: np.ndarray | None, alpha: float
) -> PolarityCheck:
    """The check of current rows; uninformative when the model is per class and no classes are given."""
    per_class = len(model.means) > 1
    if per_class and predictions is None:
        return PolarityCheck(float("nan"), model.threshold, float("nan"), False, False, 0)
    x, classes, _ = _rows(features, predictions if per_class else None, model.columns)
    x = _rescaled(x, model.rms)
    score, se, used = _score(model.means, model.weights, x, classes, model.min_class_rows)
    informative = bool(np.isfinite(model.threshold) and np.isfinite(score))
    p = float(scipy.stats.norm.cdf(score / se)) if informative and se > 0 else float("nan")
    drifted = bool(informative and score < model.threshold and p < alpha)
    return PolarityCheck(score, model.threshold, p, drifted, informative, used)

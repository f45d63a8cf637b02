"""Temperature scaling of a classifier's probabilities, fitted at export, and the calibration error.

Why temperature scaling (Guo et al., 2017): one parameter ``T > 0`` divides the logits before the softmax, so
the argmax (the predicted class, and every accuracy and F1 the gate and the tests measure) never changes,
and one parameter fitted on a few hundred validation windows cannot overfit them the way vector or matrix
scaling can. ``T`` minimises the negative log-likelihood of the validation labels (``scipy.optimize``, a
bounded search over ``log T``).

The temperature is baked into the ONNX graph's ``probabilities`` output (``logits`` stay raw), so serving and
batch scoring apply it with no code of their own; ``metadata["calibration"]`` records ``T`` and the expected
calibration error before and after on held-out (test) windows that the fit never saw.

ECE: the ``n_bins`` equal-width bins of the max probability, ``sum_b |B_b|/N * |acc(B_b) - conf(B_b)|``;
15 bins as in Guo et al. It is what a user of the probabilities reads: "90 % sure" should be right 90 % of
the time, which the label-free performance estimate (:mod:`seismic.monitoring.quality.estimate`) relies on.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

__all__ = ["calibration_report", "expected_calibration_error", "fit_temperature"]

# log T is searched in [log 0.05, log 20]: a net that needs more than that is broken, not miscalibrated
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def _check(logits: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"{what}: expected logits [N, C] and labels [N] with N > 0, got {logits.shape} and {labels.shape}"
        )
    if not np.isfinite(logits).all():
        raise ValueError(f"{what}: logits hold NaN or Inf")
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(
            f"{what}: labels must lie in [0, {logits.shape[1]}), got {labels.min()}..{labels.max()}"
        )
    return logits, labels.astype(np.int64)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    logp = log_softmax(logits / temperature, axis=1)
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The ``T`` minimising the validation NLL of ``softmax(logits / T)``."""
    logits, labels = _check(logits, labels, "fit_temperature")
    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))),
        bounds=_LOG_T_BOUNDS,
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(result.x))


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the max probability over ``n_bins`` equal-width bins (see the module docstring)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probabilities, labels = _check(probabilities, labels, "expected_calibration_error")
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, confidence, n_bins))
    return float(gap.sum() / count.sum())


def calibration_report(
    fit_logits: np.ndarray, fit_labels: np.ndarray, eval_logits: np.ndarray, eval_labels: np.ndarray
) -> dict[str, Any]:
    """Fit ``T`` on the first pair (validation), measure ECE and NLL before and after on the second (test)."""
    temperature = fit_temperature(fit_logits, fit_labels)
    eval_logits, eval_labels = _check(eval_logits, eval_labels, "calibration evaluation")
    before, after = softmax(eval_logits, axis=1), softmax(eval_logits / temperature, axis=1)
    return {
        "method": "temperature_scaling",
        "temperature": round(temperature, 6),
        "fitted_on": "val",
        "n_fit": len(fit_labels),
        "evaluated_on": "test",
        "n_eval": len(eval_labels),
        "ece_bins": 15,
        "ece_before": round(expected_calibration_error(before, eval_labels), 6),
        "ece_after": round(expected_calibration_error(after, eval_labels), 6),
        "nll_before": round(nll(eval_logits, eval_labels), 6),
        "nll_after": round(nll(eval_logits, eval_labels, temperature), 6),
    }

"""Realised and label-free (CBPE) performance: exact on known matrices, unbiased when calibrated, thresholds
that pass the reference's own variation and catch a real drop."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from seismic.monitoring.quality.performance import (
    confusion,
    estimated_metrics,
    expected_confusion,
    fit_thresholds,
    judge,
    metrics,
)


def calibrated(n: int, seed: int, sharpness: float = 2.0, classes: int = 4, shares=None):
    """Probabilities and labels drawn from them (calibrated by construction); ``shares`` tilts the class mix
    the way a facies-mix shift does: the logits of the classes, not ``P(true | x)``, change."""
    rng = np.random.default_rng(seed)
    centre = rng.choice(classes, size=n, p=shares)
    logits = rng.normal(0, 1, (n, classes)) + sharpness * np.eye(classes)[centre]
    p = softmax(logits, axis=1)
    labels = (rng.random((n, 1)) > p.cumsum(axis=1)).sum(axis=1).clip(max=classes - 1)
    return p, labels


def test_metrics_of_a_known_matrix():
    m = np.array([[8, 2, 0], [1, 4, 0], [0, 0, 0]])  # class 2 never occurs: not in the macro average
    out = metrics(m, ["a", "b", "c"])
    assert out["accuracy"] == pytest.approx(12 / 15)
    assert out["macro_f1"] == pytest.approx((16 / 19 + 8 / 11) / 2)
    assert out["recall"] == {"a": pytest.approx(0.8), "b": pytest.approx(0.8)}
    assert metrics(np.zeros((3, 3)))["accuracy"] is None


def test_expected_confusion_sums_probabilities_by_predicted_class():
    p = np.array([[0.7, 0.3], [0.6, 0.4], [0.2, 0.8]])
    np.testing.assert_allclose(expected_confusion(p, p.argmax(axis=1)), [[1.3, 0.2], [0.7, 0.8]])


@pytest.mark.parametrize("shares", [None, [0.7, 0.1, 0.1, 0.1]])
def test_estimate_matches_realised_on_calibrated_data_and_band_covers_it(shares):
    covered, errors = 0, []
    for seed in range(20):
        p, labels = calibrated(3000, seed, shares=shares)
        predicted = p.argmax(axis=1)
        est = estimated_metrics(p, predicted, n_draws=100, seed=seed)
        real = metrics(confusion(labels, predicted, 4))
        errors.append(abs(est["accuracy"] - real["accuracy"]))
        lo, hi = est["band"]["accuracy"]
        covered += lo <= real["accuracy"] <= hi
        assert abs(est["macro_f1"] - real["macro_f1"]) < 0.04
    assert np.mean(errors) < 0.01 and covered >= 15  # a 90 % band


def test_thresholds_pass_the_reference_and_flag_a_worse_model():
    p, labels = calibrated(4000, 0)
    thresholds = fit_thresholds(p, labels, np.arange(4000) // 250, min_drop=0.0)
    assert 0 < thresholds.max_drop["estimated"]["accuracy"] < 0.1
    assert thresholds.max_drop["realised"]["accuracy"] > thresholds.max_drop["estimated"]["accuracy"]
    same, _ = calibrated(2000, 1)
    worse, _ = calibrated(2000, 2, sharpness=0.8)  # a model that separates the classes far less well
    for window, dropped in ((same, False), (worse, True)):
        est = estimated_metrics(window, window.argmax(axis=1), n_draws=20)
        verdict = judge(est, None, thresholds, min_labelled=100)
        assert verdict["estimated"]["dropped"]["accuracy"] is dropped
        assert verdict["realised"] is None


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="probabilities must be"):
        estimated_metrics(np.ones((3, 2)), np.zeros(2, int))
    with pytest.raises(ValueError, match="z must be > 0"):
        fit_thresholds(np.ones((3, 2)) / 2, np.zeros(3, int), np.arange(3), z=0)

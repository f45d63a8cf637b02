"""Raw-feature and prediction statistics against scipy and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

from seismic.monitoring.drift import statistics as drift


def test_ks_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=500), rng.normal(0.2, 1.0, size=300)
    expected = scipy.stats.ks_2samp(a, b)
    assert drift.ks_test(a, b) == pytest.approx((expected.statistic, expected.pvalue))


def test_psi_hand_computed():
    value = 0.25 * math.log(2.0) + 0.25 * math.log(1.5)  # (0.25-0.5) ln(0.5) + (0.75-0.5) ln(1.5)
    assert drift.psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(value)
    assert drift.psi([0.2, 0.8], [0.2, 0.8]) == 0.0


def test_psi_floors_empty_bins():
    eps = drift.PSI_EPS
    expected = 2 * (1 - eps) * math.log(1 / eps)  # (eps - 1) ln(eps / 1) + (1 - eps) ln(1 / eps)
    assert drift.psi([1.0, 0.0], [0.0, 1.0]) == pytest.approx(expected)


def test_js_distance_matches_scipy_and_bounds():
    p, q = np.array([0.1, 0.4, 0.5]), np.array([0.3, 0.3, 0.4])
    assert drift.js_distance(p, q) == pytest.approx(scipy.spatial.distance.jensenshannon(p, q, base=2))
    assert drift.js_distance(p, p) == 0.0
    assert drift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert drift.js_distance([0, 0], [0, 1]) == 0.0


def test_quantile_bins_keep_a_constant_reference_informative():
    """zero_fraction is 0 in the reference; 10 % dead windows must land in their own bin."""
    edges = drift.quantile_edges(np.zeros(1000), 10)
    np.testing.assert_array_equal(edges, [0.0])
    current = np.r_[np.zeros(900), np.ones(100)]
    np.testing.assert_allclose(drift.bin_proportions(current, edges), [0.9, 0.1])
    effects, p = drift.raw_statistics(np.zeros(1000), current, edges, drift.feature_scale(np.zeros(1000)))
    assert effects["ks"] == pytest.approx(0.1) and effects["psi"] > 0.5 and p < 1e-3


def test_quantile_bins_are_equal_mass():
    ref = np.random.default_rng(1).normal(size=10_000)
    edges = drift.quantile_edges(ref, 10)
    assert len(edges) == 9
    np.testing.assert_allclose(drift.bin_proportions(ref, edges), 0.1, atol=1e-3)


def test_raw_statistics_wasserstein_in_reference_std_units():
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(0, 2.0, 4000), rng.normal(1.0, 2.0, 4000)
    scale = drift.feature_scale(ref)
    effects, _ = drift.raw_statistics(ref, cur, drift.quantile_edges(ref, 10), scale)
    assert effects["wasserstein"] == pytest.approx(scipy.stats.wasserstein_distance(ref, cur) / scale)
    assert effects["wasserstein"] == pytest.approx(0.5, abs=0.06)


def test_chi2_matches_scipy_and_degenerate_tables():
    ref, cur = np.array([50.0, 30.0, 20.0, 0.0]), np.array([40.0, 40.0, 10.0, 0.0])
    expected = scipy.stats.chi2_contingency(np.array([ref, cur])[:, :3], correction=False)
    assert drift.chi2_test(ref, cur) == pytest.approx((expected.statistic, expected.pvalue))
    assert drift.chi2_test(np.array([5.0, 0.0]), np.array([7.0, 0.0])) == (0.0, 1.0)


def test_class_distribution_checks_range():
    np.testing.assert_array_equal(drift.class_distribution(np.array([0, 2, 2]), 3), [1, 0, 2])
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        drift.class_distribution(np.array([3]), 3)


def test_adjust_pvalues():
    p = np.array([0.01, 0.02, 0.5])
    np.testing.assert_allclose(drift.adjust_pvalues(p, "bonferroni"), [0.03, 0.06, 1.0])
    np.testing.assert_allclose(drift.adjust_pvalues(p, "bh"), scipy.stats.false_discovery_control(p))
    np.testing.assert_allclose(drift.adjust_pvalues(p, "bh"), [0.03, 0.03, 0.5])
    np.testing.assert_array_equal(drift.adjust_pvalues(p, "none"), p)
    with pytest.raises(ValueError, match="holm"):
        drift.adjust_pvalues(p, "holm")

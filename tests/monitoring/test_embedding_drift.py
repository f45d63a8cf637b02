"""MMD permutation test and domain classifier."""

from __future__ import annotations

import numpy as np
import pytest

from seismic.monitoring.drift.embedding import (
    _selections,
    classifier_test,
    median_bandwidth,
    mmd2_from_selections,
    mmd_test,
)


def _brute_mmd2(x: np.ndarray, y: np.ndarray, bw: float) -> float:
    def k(a, b):
        return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * bw * bw))

    n, m = len(x), len(y)
    kxx, kyy = k(x, x), k(y, y)
    return (kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * k(x, y).mean()


def test_unbiased_mmd2_matches_brute_force():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)), rng.normal(0.4, 1.0, size=(45, 5))
    result = mmd_test(x, y, bandwidth=2.0, permutations=50)
    assert result.mmd2 == pytest.approx(_brute_mmd2(x, y, 2.0), abs=1e-6)


def test_slabs_and_permutations_agree_with_brute_force():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(50, 3)).astype(np.float32)
    sel = _selections(20, 50, 5, np.random.default_rng(2))
    stats = mmd2_from_selections(z, sel, 20, 1.5, slab_rows=7)
    np.testing.assert_allclose(stats, mmd2_from_selections(z, sel, 20, 1.5, slab_rows=1000), atol=1e-6)
    for col in range(sel.shape[1]):
        chosen = sel[:, col] == 1
        assert sel[:, col].sum() == 20
        assert stats[col] == pytest.approx(_brute_mmd2(z[chosen], z[~chosen], 1.5), abs=1e-5)


def test_p_value_counts_the_observed_statistic():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(100, 4)), rng.normal(5.0, 1.0, size=(100, 4))
    result = mmd_test(x, y, permutations=19)
    assert result.p_value == pytest.approx(1 / 20)  # never 0, however clear the shift


def test_identical_samples_give_p_one():
    x = np.random.default_rng(4).normal(size=(80, 6))
    result = mmd_test(x, x.copy(), permutations=99)
    assert result.mmd2 < 0 and result.p_value == 1.0


def test_permutation_p_values_are_not_small_under_the_null():
    rng = np.random.default_rng(5)
    p = [
        mmd_test(rng.normal(size=(150, 8)), rng.normal(size=(120, 8)), permutations=99, seed=s).p_value
        for s in range(10)
    ]
    assert sum(v < 0.05 for v in p) <= 2 and max(p) > 0.3


def test_median_bandwidth_by_hand():
    z = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3
    assert median_bandwidth(z) == 2.0
    assert median_bandwidth(np.zeros((5, 2))) == 1.0


def test_mmd_rejects_bad_shapes():
    with pytest.raises(ValueError, match="mmd_test"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 3)))


def test_classifier_sees_spread_and_not_noise():
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(1000, 8))
    same = classifier_test(ref, rng.normal(size=(800, 8)))
    assert abs(same.auc - 0.5) < 0.06 and same.p_value > 0.01
    wider = classifier_test(ref, rng.normal(size=(800, 8)) * 1.5)  # no mean shift: the squares see it
    assert wider.auc > 0.7 and wider.p_value < 1e-10
    assert wider.n_test == 500 + 400

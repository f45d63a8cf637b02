"""Two detectors of drift in the network's embeddings: an MMD permutation test and a domain classifier.

**MMD.** Gaussian kernel ``k(a, b) = exp(-|a - b|^2 / (2 s^2))``, ``s`` by the median heuristic (median
pairwise distance of a sample of rows). The statistic is the unbiased MMD^2. Relabelling the pooled rows
``Z = [X; Y]`` by a selection vector ``S`` (1 for the rows called X) gives every quantity of MMD^2 from two
numbers: ``q = S' K S`` and ``r = S' K 1``. With ``T = 1' K 1`` and ``k(a, a) = 1``::

    MMD^2_u = (q - n) / (n (n-1)) + (T - 2r + q - m) / (m (m-1)) - 2 (r - q) / (n m)

so the observed labelling and all permutations are the columns of one ``[N, P+1]`` float32 matrix and
the whole test is ``K @ S``: one matrix product, done in row slabs of ``K`` over its upper triangle only
(``K`` is symmetric: half the flops, and ``K`` is never held whole; memory ``O(slab * N)``). The p-value
counts the observed statistic among the permutations, ``(1 + #{perm >= observed}) / (P + 1)``: never 0.

**Domain classifier.** A ridge least-squares discriminant (Fisher's linear discriminant up to scale)
separating reference from current rows on the standardised embedding and its squares (so it sees shifts
of both mean and spread along each axis), fitted on a random half of each side in closed form (one
``(2D+1) x (2D+1)`` solve: ~10 ms at 5k rows, where an iterative logistic fit took ~5 s and was no more
sensitive); its held-out AUC is the effect size and the Mann-Whitney U test of the held-out scores gives
the p-value (held-out rows were not used to fit, so the test is valid). It looks at the data differently
from MMD (a learned direction instead of a fixed kernel), so the two can confirm each other.

Numpy/scipy only (serving imports monitoring and must not import torch).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.spatial.distance
import scipy.stats

_SLAB_ROWS = 1024  # rows of K per slab: 40 MB of float32 at N = 10k
_TIE_TOL = 1e-6  # MMD^2 units: float32 round-off, so exact ties (identical samples) count as >= observed


def median_bandwidth(z: np.ndarray, sample: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance among at most ``sample`` random rows; 1.0 if all coincide."""
    z = np.asarray(z, dtype=np.float64)
    if len(z) > sample:
        z = z[np.random.default_rng(seed).choice(len(z), sample, replace=False)]
    d = scipy.spatial.distance.pdist(z)
    d = d[d > 0]
    return float(np.median(d)) if d.size else 1.0


@dataclass(frozen=True)
class MMDResult:
    mmd2: float  # unbiased MMD^2 of the observed labelling
    p_value: float
    bandwidth: float
    permutations: int


def _selections(n: int, total: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """``[total, P+1]`` float32 0/1: column 0 the observed labelling (first n rows), then random subsets."""
    sel = np.zeros((permutations + 1, total), dtype=np.float32)
    sel[0, :n] = 1.0
    if permutations:
        picks = np.argpartition(rng.random((permutations, total)), n - 1, axis=1)[:, :n]
        np.put_along_axis(sel[1:], picks, 1.0, axis=1)
    return np.ascontiguousarray(sel.T)


def mmd2_from_selections(
    z: np.ndarray, sel: np.ndarray, n: int, bandwidth: float, slab_rows: int = _SLAB_ROWS
) -> np.ndarray:
    """Unbiased MMD^2 for every column of ``sel`` (rows marked 1 are X, the others Y), float64 ``[P+1]``."""
    z = np.ascontiguousarray(z, dtype=np.float32)
    total = len(z)
    m = total - n
    gamma = np.float32(0.5 / bandwidth**2)
    sq = np.einsum("ij,ij->i", z, z)
    q = np.zeros(sel.shape[1])
    row_sums = np.zeros(total)
    for start in range(0, total, slab_rows):
        stop = min(total, start + slab_rows)
        slab = z[start:stop] @ z[start:].T  # [b, total - start]: the upper triangle of K, one slab
        slab *= -2.0
        slab += sq[start:stop, None]
        slab += sq[None, start:]
        np.maximum(slab, 0.0, out=slab)
        slab *= -gamma
        np.exp(slab, out=slab)
        b = stop - start
        slab[np.arange(b), np.arange(b)] = 1.0
        own = sel[start:stop]
        q += np.einsum("ip,ip->p", own, slab[:, :b] @ own, dtype=np.float64)
        if stop < total:
            q += 2.0 * np.einsum("ip,ip->p", own, slab[:, b:] @ sel[stop:], dtype=np.float64)
            row_sums[stop:] += slab[:, b:].sum(axis=0, dtype=np.float64)
        row_sums[start:stop] += slab.sum(axis=1, dtype=np.float64)
    r = sel.T.astype(np.float64) @ row_sums
    t = row_sums.sum()
    return (q - n) / (n * (n - 1)) + (t - 2.0 * r + q - m) / (m * (m - 1)) - 2.0 * (r - q) / (n * m)


def mmd_test(
    x: np.ndarray,
    y: np.ndarray,
    *,
    bandwidth: float | None = None,
    permutations: int = 500,
    seed: int = 0,
    bandwidth_sample: int = 1000,
) -> MMDResult:
    """Permutation test of ``x [n, D]`` vs ``y [m, D]`` (n, m >= 2). ``bandwidth`` None: median of the pool.

    Cost: ``(n + m)^2 (D + P) / 2`` multiply-adds in float32; 5k vs 5k, 64-D, 500 permutations is ~2.5e10.
    """
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(x) < 2 or len(y) < 2:
        raise ValueError(f"mmd_test needs [n, D] and [m, D] with n, m >= 2, got {x.shape} and {y.shape}")
    z = np.concatenate([x, y])
    if bandwidth is None:
        bandwidth = median_bandwidth(z, bandwidth_sample, seed)
    sel = _selections(len(x), len(z), permutations, np.random.default_rng(seed))
    stats = mmd2_from_selections(z, sel, len(x), bandwidth)
    exceed = int(np.count_nonzero(stats[1:] >= stats[0] - _TIE_TOL))
    return MMDResult(float(stats[0]), (exceed + 1) / (permutations + 1), float(bandwidth), permutations)


@dataclass(frozen=True)
class ClassifierResult:
    auc: float  # held-out AUC of "current" scores above "reference" scores
    p_value: float  # one-sided Mann-Whitney U on the held-out scores
    n_test: int


def _design(z: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    s = (np.asarray(z, dtype=np.float64) - mean) / std
    return np.concatenate([s, s * s - 1.0, np.ones((len(s), 1))], axis=1)


def _fit_ridge(a: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """Weighted ridge regression of the centred labels on ``a``: ``(A'WA + l2 P) beta = A'W y``."""
    penalty = np.full(a.shape[1], l2 / len(a))
    penalty[-1] = 0.0  # the intercept is not shrunk
    aw = a * w[:, None]
    return np.linalg.solve(aw.T @ a + np.diag(penalty), aw.T @ (2.0 * y - 1.0))


def classifier_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    l2: float = 1.0,
    seed: int = 0,
    mean: np.ndarray | None = None,
    std: np.ndarray | None = None,
) -> ClassifierResult:
    """Domain-classifier test; ``mean``/``std`` standardise the columns (default: the reference's)."""
    ref, cur = np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64)
    if len(ref) < 4 or len(cur) < 4:
        raise ValueError(f"classifier_test needs >= 4 rows per side, got {len(ref)} and {len(cur)}")
    mean = ref.mean(axis=0) if mean is None else mean
    std = ref.std(axis=0) if std is None else std
    std = np.where(std > 0, std, 1.0)
    rng = np.random.default_rng(seed)
    halves = [rng.permutation(len(side)) for side in (ref, cur)]
    train = [side[h[: len(h) // 2]] for side, h in zip((ref, cur), halves, strict=True)]
    test = [side[h[len(h) // 2 :]] for side, h in zip((ref, cur), halves, strict=True)]
    a = _design(np.concatenate(train), mean, std)
    y = np.r_[np.zeros(len(train[0])), np.ones(len(train[1]))]
    w = np.r_[np.full(len(train[0]), 0.5 / len(train[0])), np.full(len(train[1]), 0.5 / len(train[1]))]
    beta = _fit_ridge(a, y, w, l2)
    ref_scores, cur_scores = _design(test[0], mean, std) @ beta, _design(test[1], mean, std) @ beta
    u = scipy.stats.mannwhitneyu(cur_scores, ref_scores, alternative="greater", method="asymptotic")
    auc = float(u.statistic) / (len(cur_scores) * len(ref_scores))
    return ClassifierResult(auc, float(u.pvalue), len(ref_scores) + len(cur_scores))


def pca_basis(reference: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``(mean [D], components [k, D])`` of the reference: the axes of the report's projection plot."""
    ref = np.asarray(reference, dtype=np.float64)
    mean = ref.mean(axis=0)
    _, _, vt = np.linalg.svd(ref - mean, full_matrices=False)
    return mean, vt[:k]

"""Two-sample statistics of the drift engine: raw features, predicted classes, multiple-testing control.

Pure functions on numpy arrays (numpy/scipy only: serving imports monitoring and must not import torch).
Per feature, KS gives the significance and four effect sizes describe how far the samples are apart:

==============  ================================================================================
ks              two-sample Kolmogorov-Smirnov statistic ``D`` (max CDF difference), scipy's p-value
wasserstein     1-Wasserstein distance divided by the reference standard deviation (scale-free)
psi             population stability index on reference quantile bins,
                ``sum((c - r) ln(c / r))`` with proportions floored at ``PSI_EPS``
js              Jensen-Shannon distance (base 2, in [0, 1]) on the same bins
==============  ================================================================================

Quantile bins are right-closed, ``(-inf, e1], (e1, e2], ..., (ek, inf)`` with duplicate edges dropped, so
a feature that is constant in the reference (``zero_fraction`` = 0) still has two bins and a current
sample with dead traces lands in the second one.

Predicted classes: chi-square test of homogeneity on the 2 x C table (significance) and the JS distance of
the two class distributions (effect size).

Why effect sizes: with a million rows a p-value flags differences nobody cares about; the detector
(:mod:`seismic.monitoring.drift.detector`) calls a feature drifted only when KS is significant after
correction AND the gate effect passes its threshold.
"""

from __future__ import annotations

import numpy as np
import scipy.spatial.distance
import scipy.stats

PSI_EPS = 1e-4  # floor of a bin's proportion: an empty bin contributes a large but finite term


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior edges at the reference's ``k / bins`` quantiles, duplicates removed (1 to bins-1 edges)."""
    ref = np.asarray(reference, dtype=np.float64)
    edges = np.quantile(ref, np.arange(1, bins) / bins)
    return np.unique(edges)


def bin_proportions(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of ``x`` in each right-closed bin defined by ``edges`` (``len(edges) + 1`` bins)."""
    index = np.searchsorted(edges, np.asarray(x, dtype=np.float64), side="left")
    counts = np.bincount(index, minlength=len(edges) + 1)
    return counts / max(1, counts.sum())


def psi(reference_props: np.ndarray, current_props: np.ndarray) -> float:
    r = np.maximum(np.asarray(reference_props, dtype=np.float64), PSI_EPS)
    c = np.maximum(np.asarray(current_props, dtype=np.float64), PSI_EPS)
    return float(np.sum((c - r) * np.log(c / r)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two distributions; 0 when both are empty."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    return float(np.nan_to_num(scipy.spatial.distance.jensenshannon(p, q, base=2.0)))


def ks_test(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """``(D, p)`` of the two-sample KS test (scipy; exact for small samples, asymptotic for large)."""
    result = scipy.stats.ks_2samp(reference, current, method="auto")
    return float(result.statistic), float(result.pvalue)


def feature_scale(reference: np.ndarray) -> float:
    """Unit of the Wasserstein effect: the reference std, or 1 for a constant reference (absolute units)."""
    std = float(np.std(reference))
    return std if std > 0 else 1.0


def raw_statistics(
    reference: np.ndarray, current: np.ndarray, edges: np.ndarray, scale: float
) -> tuple[dict[str, float], float]:
    """The four effect sizes of one feature (``{ks, wasserstein, psi, js}``) and the KS p-value.

    ``edges`` and ``scale`` come from the whole reference (:func:`quantile_edges`, :func:`feature_scale`),
    so every comparison against one reference is measured in the same units.
    """
    d, p = ks_test(reference, current)
    ref_props, cur_props = bin_proportions(reference, edges), bin_proportions(current, edges)
    effects = {
        "ks": d,
        "wasserstein": float(scipy.stats.wasserstein_distance(reference, current)) / scale,
        "psi": psi(ref_props, cur_props),
        "js": js_distance(ref_props, cur_props),
    }
    return effects, p


def class_distribution(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of each class ``0 .. n_classes - 1``; values outside that range are an error."""
    c = np.asarray(classes)
    if c.size and (c.min() < 0 or c.max() >= n_classes):
        raise ValueError(f"predicted classes must lie in [0, {n_classes}), got [{c.min()}, {c.max()}]")
    return np.bincount(c.astype(np.int64), minlength=n_classes).astype(np.float64)


def chi2_test(reference_counts: np.ndarray, current_counts: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity on the ``2 x C`` table; classes absent from both are dropped.

    ``(0, 1)`` when fewer than two classes occur: there is nothing to compare.
    """
    table = np.stack([reference_counts, current_counts]).astype(np.float64)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 0.0, 1.0
    result = scipy.stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def adjust_pvalues(p_values: np.ndarray, method: str) -> np.ndarray:
    """Bonferroni (``min(1, k p)``), Benjamini-Hochberg (``scipy.stats.false_discovery_control``) or none.

    Compare the adjusted values with alpha: Bonferroni controls the chance of any false rejection, BH the
    expected share of false ones among the rejections.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * p.size)
    if method == "bh":
        return scipy.stats.false_discovery_control(p, method="bh")
    raise ValueError(f"unknown multiple-testing correction {method!r}; use bonferroni, bh or none")

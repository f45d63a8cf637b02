"""Thresholds from the variation that really exists between parts of the reference.

Why (design.md, "A measured pitfall for the drift engine"): every window is compared with ONE fixed
reference sample, and windows cut from one survey are spatially correlated. The i.i.d. null of KS or of a
permutation test then underestimates how much two no-shift samples differ, and with thousands of rows a
p-value flags that difference. So each effect size also has to beat what the reference does against
itself: the reference is split into ``n_chunks`` chunks of whole groups (inline blocks, surveys, days:
whatever ``groups`` says; row order when none), each chunk is compared with the rest of the reference
exactly as a current window would be, and the threshold of a statistic is

    max(largest chunk value, exp(mean + z * std of the log chunk values))

(the second term extrapolates beyond the few chunks: with 16 chunks the largest value alone is only
about the 94th percentile, and a window is tested on ~34 features at once). On the log scale because the
statistics are distances, positive and right-skewed between surveys: measured on the drift benchmark,
``mean + 3 std`` of the plain values let 25 % of no-shift windows from new surveys through on some
amplitude or frequency feature. A statistic's threshold in force is the larger of this and its configured
minimum effect.

A chunk is ~1/n_chunks of the reference; a current window with more rows than that has less sampling
noise than the chunks had, so the thresholds err on the safe (high) side for it; a smaller window's extra
noise is what the significance test screens out.
"""

from __future__ import annotations

import numpy as np

LOG_FLOOR = 1e-9


def chunk_ids(
    n_rows: int, n_chunks: int, groups: np.ndarray | None = None, *, spread: bool = False
) -> np.ndarray:
    """Chunk index ``[n_rows]`` in ``0 .. k-1``: contiguous runs of sorted ``groups`` of about equal rows.

    A group is never split across chunks (rows of one inline block stay together). Without groups, rows
    are chunked in their given order. ``k`` is ``min(n_chunks, number of groups)``; fewer than 3 is an
    error, because then there is no variation to measure.

    ``spread``: the sorted groups are dealt in turn to ``k = min(n_chunks, groups // 2)`` chunks, so each
    chunk holds groups from across the reference (blocks 0, k, 2k, ... of a field) as a current window that
    samples the whole field does; a contiguous chunk is one local block, which differs from the rest more
    than such a window does, so its thresholds are higher than that window needs (measured in
    ``benchmarks/drift.py --field same``). It needs groups, at least 6.
    """
    if spread:
        if groups is None:
            raise ValueError("calibration.chunking 'spread' needs reference groups (survey x inline block)")
        values, inverse = np.unique(np.asarray(groups), return_inverse=True)
        if len(values) < 6:
            raise ValueError(f"calibration.chunking 'spread' needs >= 6 reference groups, got {len(values)}")
        return (np.arange(len(values)) % min(n_chunks, len(values) // 2))[inverse]
    if groups is None:
        return np.minimum(np.arange(n_rows) * n_chunks // max(1, n_rows), n_chunks - 1)
    groups = np.asarray(groups)
    if groups.shape != (n_rows,):
        raise ValueError(f"groups must have one entry per reference row ({n_rows}), got shape {groups.shape}")
    values, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    if len(values) < 3:
        raise ValueError(f"calibration needs >= 3 reference groups to form chunks, got {len(values)}")
    before = np.cumsum(counts) - counts  # rows of all earlier groups
    per_group = np.minimum(before * n_chunks // n_rows, n_chunks - 1)
    # renumber so that chunk ids are 0..k-1 without gaps (a huge group can swallow several slots)
    _, dense = np.unique(per_group, return_inverse=True)
    return dense[inverse]


def threshold_from_null(values: np.ndarray, z: float) -> np.ndarray:
    """``max(max(v), exp(mean(log v) + z std(log v)))`` along axis 0 (chunks), per statistic or feature.

    Values are floored at ``LOG_FLOOR`` (a chunk identical to the rest has distance 0).
    """
    v = np.asarray(values, dtype=np.float64)
    logs = np.log(np.maximum(v, LOG_FLOOR))
    return np.maximum(v.max(axis=0), np.exp(logs.mean(axis=0) + z * logs.std(axis=0, ddof=1)))

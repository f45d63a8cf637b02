"""Run times of the drift tests and MMD peers side by side, for ``benchmarks/drift.py``.

Each test as ``compare`` runs it, timed at 1k/5k/10k rows per side on pooled no-shift rows; then our MMD
permutation test beside TorchDrift's and alibi-detect's (when installed) on the same 5k vs 5k embeddings.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import scipy.stats
import torch

from seismic.monitoring.drift import statistics as drift
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.embedding import classifier_test, mmd_test


def _suite(cfg: DriftConfig, f_a, f_b, p_a, p_b, e_a, e_b) -> dict:
    """Each test as run by ``compare`` on one pair of samples (all feature columns, 6 classes, embeddings)."""
    edges = [drift.quantile_edges(c, cfg.raw.bins) for c in f_a.T]
    pairs = list(zip(f_a.T, f_b.T, edges, strict=True))
    n = len(pairs)
    return {
        f"ks ({n} features)": lambda: [drift.ks_test(x, y) for x, y, _ in pairs],
        f"wasserstein ({n})": lambda: [scipy.stats.wasserstein_distance(x, y) for x, y, _ in pairs],
        f"psi+js ({n})": lambda: [
            (drift.psi(p, q), drift.js_distance(p, q))
            for x, y, e in pairs
            for p, q in [(drift.bin_proportions(x, e), drift.bin_proportions(y, e))]
        ],
        "chi2 predictions": lambda: drift.chi2_test(
            drift.class_distribution(p_a, 6), drift.class_distribution(p_b, 6)
        ),
        f"mmd ({cfg.embedding.mmd.permutations} perms)": lambda: mmd_test(
            e_a, e_b, permutations=cfg.embedding.mmd.permutations
        ),
        "domain classifier": lambda: classifier_test(e_a, e_b),
    }


def timings(cfg: DriftConfig, pool: dict[str, np.ndarray], sizes) -> list[dict]:
    """Best of 2 wall-clock seconds per test at ``n`` rows per side (disjoint no-shift rows)."""
    rows = []
    rng = np.random.default_rng(0)
    for n in sizes:
        idx = rng.permutation(len(pool["features"]))
        a, b = idx[:n], idx[n : 2 * n]
        suite = _suite(cfg, *(pool[k][i] for k in ("features", "predictions", "embeddings") for i in (a, b)))
        for name, fn in suite.items():
            best = min(_seconds(fn) for _ in range(2))
            rows.append({"test": name, "rows_per_side": n, "seconds": round(best, 4)})
    return rows


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


PEER_ROWS, PEER_PERMUTATIONS = 5000, 100  # the comparison asked for: 5k vs 5k 64-dim, 100 permutations


def _torchdrift_mmd(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from torchdrift.detectors.mmd import kernel_mmd

    stat, p = kernel_mmd(torch.from_numpy(x), torch.from_numpy(y), n_perm=PEER_PERMUTATIONS)
    return float(stat), float(p)


def _alibi_mmd(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from alibi_detect.cd import MMDDrift

    result = MMDDrift(x, backend="pytorch", n_permutations=PEER_PERMUTATIONS, device="cpu").predict(y)["data"]
    return float(result["distance"]), float(result["p_val"])


def peers(pool: dict[str, np.ndarray]) -> list[dict]:
    """Installed peers' MMD permutation tests beside ours on the same no-shift embeddings (5k vs 5k, 100
    permutations, each with its own median-heuristic bandwidth); a peer that is not installed is reported."""
    emb = pool["embeddings"].astype(np.float32)
    if len(emb) < 2 * PEER_ROWS:
        print(f"peers: {len(emb)} pooled embeddings, fewer than 2 x {PEER_ROWS}; not run")
        return []
    idx = np.random.default_rng(1).permutation(len(emb))
    x, y = emb[idx[:PEER_ROWS]], emb[idx[PEER_ROWS : 2 * PEER_ROWS]]
    runs = {
        "seismic (100 perms)": lambda: _ours(x, y, PEER_PERMUTATIONS),
        "seismic (500 perms)": lambda: _ours(x, y, 500),
        "torchdrift": lambda: _torchdrift_mmd(x, y),
        "alibi_detect": lambda: _alibi_mmd(x, y),
    }
    out = []
    for name, fn in runs.items():
        module = name.split()[0]
        if module != "seismic" and importlib.util.find_spec(module) is None:
            print(f"peer {module}: not installed, not run (pip install {module.replace('_', '-')})")
            out.append({"peer": name, "installed": False})
            continue
        start = time.perf_counter()
        stat, p = fn()
        seconds = time.perf_counter() - start
        out.append({"peer": name, "installed": True, "seconds": round(seconds, 3), "statistic": stat, "p": p})
        print(f"{name:<22}{PEER_ROWS:>6} vs {PEER_ROWS:<6}{seconds:>9.3f} s   MMD {stat:.3g}  p {p:.3f}")
    return out


def _ours(x: np.ndarray, y: np.ndarray, permutations: int) -> tuple[float, float]:
    result = mmd_test(x, y, permutations=permutations)
    return result.mmd2, result.p_value

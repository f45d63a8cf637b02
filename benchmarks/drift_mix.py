"""The facies-mix shift of ``benchmarks/drift.py``: what a window's true facies shares are, what the best
detector reading them could do (two label oracles), and why a shifted window passed the real one."""

from __future__ import annotations

from typing import Any

import numpy as np

MIX_WEIGHTS = {"facies_mix": 3.0, "facies_mix_x8": 8.0}  # MIX_FACIES drawn this many times as often
MIX_FACIES = 3  # thin_bedded: a shift that matters (a share of ~1/6 tripled), not chosen for detectability
N_CLASSES = 6


def true_shares(labels: np.ndarray) -> np.ndarray:
    """Share of each facies among the labels at a set of window centres."""
    return np.bincount(np.ravel(labels), minlength=N_CLASSES) / max(1, np.size(labels))


def missed(result, baseline, true_change: np.ndarray) -> dict[str, Any]:
    """Why a facies-mix window passed: MIX_FACIES' change of predicted share against its threshold."""
    p = result.predictions
    change = p.current_distribution[MIX_FACIES] - p.reference_distribution[MIX_FACIES]
    return {
        "window": result.window["id"],
        "predicted_change": round(float(change), 4),
        "threshold": round(float(baseline.thresholds["predictions_share"][MIX_FACIES]), 4),
        "true_change": round(float(true_change[MIX_FACIES]), 4),
    }


def mix_oracle(shares: dict[str, list[np.ndarray]], shift: str, false_alarm: float) -> dict[str, Any]:
    """What a detector could at best do on a facies-mix shift, from each window's TRUE facies shares
    (labels, no model), as changes from the reference's shares; each threshold is set so that the no-shift
    windows alarm at ``false_alarm`` (the detector's measured rate; at least one window's worth), which
    makes the powers comparable. ``oracle``: knows which facies is shifted and in which direction (a
    threshold on the rise of MIX_FACIES' share). ``blind_oracle``: knows neither, as a detector does: a
    threshold on the largest change of any facies' share, each in units of its no-shift RMS change."""
    null, shifted = np.stack(shares["no_shift"]), np.stack(shares[shift])
    scale = np.maximum(np.sqrt((null * null).mean(axis=0)), 1e-9)
    known = _oracle(null[:, MIX_FACIES], shifted[:, MIX_FACIES], false_alarm)
    blind = _oracle(np.abs(null / scale).max(axis=1), np.abs(shifted / scale).max(axis=1), false_alarm)
    spread = lambda x: [round(float(q), 4) for q in np.quantile(x, [0, 0.5, 1])]  # noqa: E731
    return {
        **known,
        "blind": blind,
        "no_shift_change": spread(null[:, MIX_FACIES]),
        "shifted_change": spread(shifted[:, MIX_FACIES]),
    }


def _oracle(null: np.ndarray, shifted: np.ndarray, false_alarm: float) -> dict[str, float]:
    level = 1.0 - max(false_alarm, 1.0 / len(null))
    threshold = float(np.quantile(null, level, method="higher"))
    return {
        "threshold": threshold,
        "false_alarm": float(np.mean(null > threshold)),
        "power": float(np.mean(shifted > threshold)),
    }

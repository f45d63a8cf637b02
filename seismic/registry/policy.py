"""The gate's rule and its numbers, without torch or MLflow: config, metrics, decision.

See :mod:`seismic.registry.gate` for how the evaluations are made.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

GATE_METRICS = ("macro_f1", "accuracy", "balanced_accuracy")


@dataclass(frozen=True)
class GateConfig:
    metric: str = "macro_f1"
    margin: float = 0.0
    floor: float = 0.5
    parity_bound: float = 1e-4
    max_windows: int = 4096
    parity_windows: int = 512

    def __post_init__(self) -> None:
        if self.metric not in GATE_METRICS:
            raise ValueError(f"gate.metric must be one of {GATE_METRICS}, got {self.metric!r}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"gate.floor must be in [0, 1], got {self.floor}")
        if not (np.isfinite(self.parity_bound) and self.parity_bound >= 0):
            raise ValueError(f"gate.parity_bound must be >= 0, got {self.parity_bound}")
        if self.max_windows < 1 or self.parity_windows < 1:
            raise ValueError("gate.max_windows and gate.parity_windows must be >= 1")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> GateConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(mapping) - known)
        if unknown:
            raise ValueError(f"gate: unknown key(s) {unknown}; expected {sorted(known)}")
        return cls(**dict(mapping))


def classification_metrics(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> dict[str, float]:
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted_count = confusion.sum(axis=1), confusion.sum(axis=0)
    present = support > 0
    seen = present | (predicted_count > 0)
    f1 = np.divide(2 * tp, support + predicted_count, out=np.zeros(num_classes), where=seen)
    return {
        "accuracy": float(tp.sum() / max(1, len(labels))),
        "balanced_accuracy": float((tp[present] / support[present]).mean()),
        "macro_f1": float(f1[seen].mean()),
    }


def decide(challenger: dict[str, Any], champion: dict[str, Any] | None, cfg: GateConfig) -> list[str]:
    """Why the challenger may not be promoted; an empty list means it may."""
    reasons = []
    value = challenger["metrics"][cfg.metric]
    if champion is None:
        if value < cfg.floor:
            reasons.append(f"{cfg.metric} {value:.4f} is below the floor {cfg.floor:.4f} (no champion yet)")
    else:
        needed = champion["metrics"][cfg.metric] + cfg.margin
        if value < needed:
            reasons.append(
                f"{cfg.metric} {value:.4f} < champion v{champion['version']}'s "
                f"{champion['metrics'][cfg.metric]:.4f} + margin {cfg.margin:g} = {needed:.4f}"
            )
    for label, error in (
        ("recorded at export", challenger["recorded_parity"]),
        ("re-measured", challenger["parity"]),
    ):
        if not error <= cfg.parity_bound:
            reasons.append(f"parity error {label} {error:.3g} exceeds the bound {cfg.parity_bound:g}")
    return reasons

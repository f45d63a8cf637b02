"""Adaptive thresholds: a statistic's alert threshold learned from its own history in production.

The drift engine's thresholds are calibrated once, on chunks of the reference profile (see
``seismic/monitoring/drift/calibration.py``).
Production traffic can vary more (or less) than those chunks did:
other parts of a field, acquisition campaigns, a season of work. For a statistic switched to adaptive, the
threshold becomes what that statistic has looked like over the recent windows *without alerts*:

- ``method: sigma`` (default): ``exp(mean + k * std)`` of the log values, the same log-normal rule the
  calibration uses (effect sizes are positive and right-skewed: on the linear scale a few large values
  would dominate the spread);
- ``method: quantile``: the ``quantile`` of the values (no distribution assumed; needs a longer history to
  be stable, e.g. 0.99 wants >= 100 windows).

Until a statistic has ``warmup`` values it keeps the static threshold. Significance is still required where
the statistic has a test (KS for features, chi-square for predictions, the permutation or AUC test for the
embeddings): only the effect-size threshold adapts. History is appended only for windows that raised no
drift alert, so a lasting drift does not teach the monitor that drift is normal; it keeps the last
``max_history`` values. The histories live in the monitor's state file.

Statistics (names for ``adaptive.statistics``, which takes fnmatch patterns, e.g. ``["embedding.*"]``):
``feature.<name>`` (the gate effect size of a raw feature, ``drift.raw.gate``), ``predictions.js``,
``predictions.share`` (the largest change of one class's share),
``embedding.mmd`` (unbiased MMD^2) and ``embedding.classifier`` (held-out AUC).
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

METHODS = ("sigma", "quantile")
_EPS = 1e-12  # effect sizes can be exactly 0 (identical histograms); log needs a floor


@dataclass(frozen=True)
class AdaptiveConfig:
    enabled: bool = False
    statistics: tuple[str, ...] = ("*",)  # fnmatch patterns of the statistics that adapt (when enabled)
    method: str = "sigma"
    k: float = 3.0
    quantile: float = 0.99
    warmup: int = 12
    max_history: int = 500

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> AdaptiveConfig:
        values = dict(mapping or {})
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"adaptive: unknown key(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        if "statistics" in values:
            values["statistics"] = tuple(values["statistics"] or ())
        cfg = cls(**values)
        if cfg.method not in METHODS:
            raise ValueError(f"adaptive.method must be one of {METHODS}, got {cfg.method!r}")
        if not (0.5 < cfg.quantile < 1.0) or cfg.k <= 0 or cfg.warmup < 2 or cfg.max_history < cfg.warmup:
            raise ValueError("adaptive: need 0.5 < quantile < 1, k > 0, warmup >= 2, max_history >= warmup")
        return cfg

    def adapts(self, name: str) -> bool:
        return self.enabled and any(fnmatch.fnmatchcase(name, p) for p in self.statistics)


@dataclass(frozen=True)
class StatDecision:
    name: str
    family: str  # raw | predictions | embedding
    value: float | None
    threshold: float | None
    significant: bool
    drifted: bool
    source: str  # static | adaptive | warmup (adaptive, not enough history yet: static threshold)

    @property
    def ratio(self) -> float:
        if self.value is None or not self.threshold:
            return 0.0
        return self.value / self.threshold

    def value_text(self) -> str:
        tag = "adaptive " if self.source == "adaptive" else ""
        return f"{num(self.value)} ({tag}threshold {num(self.threshold)})"


def num(value: float | None) -> str:
    """3 significant digits: deterministic and short in every channel."""
    return "n/a" if value is None else f"{value:.3g}"


def learned_threshold(history: Sequence[float], cfg: AdaptiveConfig) -> float | None:
    """The threshold from log values (``None`` during warm-up)."""
    if len(history) < cfg.warmup:
        return None
    logs = np.asarray(history, dtype=np.float64)
    if cfg.method == "quantile":
        return float(np.exp(np.quantile(logs, cfg.quantile)))
    return float(np.exp(logs.mean() + cfg.k * logs.std(ddof=1)))


def _raw_statistics(window: Mapping[str, Any]):
    for f in window["raw"]["features"]:
        gate = f["tests"][f["gate"]]
        p = f["tests"]["ks"]["p_adjusted"]
        yield f"feature.{f['name']}", "raw", gate["effect_size"], gate["threshold"], p, gate["drifted"]


def statistics(window: Mapping[str, Any]):
    """``(name, family, value, static threshold, adjusted p or None, static verdict)`` of a window entry."""
    yield from _raw_statistics(window)
    pred = window.get("predictions")
    if pred:
        chi2 = pred["tests"]["chi2"]
        for test in ("js", "share"):
            t = pred["tests"].get(test)  # "share" since report schema 2
            if t is None:
                continue
            yield (
                f"predictions.{test}",
                "predictions",
                t["statistic"],
                t["threshold"],
                chi2["p_adjusted"],
                t["drifted"],
            )
    emb = window.get("embedding")
    if emb:
        for test in ("mmd", "classifier"):
            t = emb["tests"][test]
            yield (
                f"embedding.{test}",
                "embedding",
                t["statistic"],
                t["threshold"],
                t["p_adjusted"],
                t["drifted"],
            )


def decide(
    window: Mapping[str, Any], history: Mapping[str, Sequence[float]], cfg: AdaptiveConfig, alpha: float
) -> dict[str, StatDecision]:
    """Every statistic of a window (status ``ok``) with the threshold that applies and its verdict."""
    out: dict[str, StatDecision] = {}
    for name, family, value, static, p_adj, static_drifted in statistics(window):
        significant = p_adj is None or p_adj < alpha
        learned = learned_threshold(history.get(name, ()), cfg) if cfg.adapts(name) else None
        if learned is None:
            source = "warmup" if cfg.adapts(name) else "static"
            out[name] = StatDecision(name, family, value, static, significant, bool(static_drifted), source)
        else:
            hit = value is not None and significant and value > learned
            out[name] = StatDecision(name, family, value, learned, significant, hit, "adaptive")
    return out


def learn(
    history: dict[str, list[float]], decisions: Mapping[str, StatDecision], cfg: AdaptiveConfig
) -> None:
    """Append a no-alert window's values (log scale) to the histories, keeping the last ``max_history``."""
    for d in decisions.values():
        if d.value is None or not math.isfinite(d.value):
            continue
        values = history.setdefault(d.name, [])
        values.append(math.log(max(d.value, 0.0) + _EPS))
        del values[: -cfg.max_history]

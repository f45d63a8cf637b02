"""Adaptive thresholds: warm-up, the two rules, per-statistic switches, significance still required."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

from seismic.monitoring.drift.adaptive import AdaptiveConfig, decide, learn, learned_threshold

sys.path.insert(0, str(Path(__file__).parent))  # report-window builder shared with the alert tests
from test_alerts import window


def test_rules_and_warmup():
    cfg = AdaptiveConfig(enabled=True, warmup=4, k=2.0)
    logs = [math.log(v) for v in (0.01, 0.02, 0.015, 0.012)]
    assert learned_threshold(logs[:3], cfg) is None  # warming up
    expected = math.exp(np.mean(logs) + 2.0 * np.std(logs, ddof=1))
    assert learned_threshold(logs, cfg) == pytest.approx(expected)
    q = AdaptiveConfig(enabled=True, warmup=4, method="quantile", quantile=0.9)
    assert learned_threshold(logs, q) == pytest.approx(math.exp(np.quantile(logs, 0.9)))


def test_only_the_switched_statistics_adapt_and_significance_is_kept():
    cfg = AdaptiveConfig(enabled=True, statistics=("embedding.mmd",), warmup=3, k=3.0)
    history: dict[str, list[float]] = {}
    for k in range(3):  # quiet windows: the MMD sits near 1e-4, far below the static 0.002
        quiet = window(k)
        quiet["embedding"]["tests"]["mmd"]["statistic"] = 1e-4 * (1 + 0.1 * k)
        learn(history, decide(quiet, history, cfg, 0.05), cfg)
    assert len(history["embedding.mmd"]) == 3 and "feature.rms" in history  # every statistic is recorded

    w = window(3)
    w["embedding"]["tests"]["mmd"]["statistic"] = 0.001  # below the static threshold, 10x the history
    decisions = decide(w, history, cfg, 0.05)
    mmd = decisions["embedding.mmd"]
    assert mmd.source == "adaptive" and mmd.threshold < 0.001 and mmd.drifted
    assert decisions["feature.rms"].source == "static" and not decisions["feature.rms"].drifted
    assert "adaptive threshold" in mmd.value_text()

    w["embedding"]["tests"]["mmd"]["p_adjusted"] = 0.3  # not significant: no drift whatever the threshold
    assert not decide(w, history, cfg, 0.05)["embedding.mmd"].drifted
    off = AdaptiveConfig(enabled=False, statistics=("embedding.mmd",))
    assert decide(w, history, off, 0.05)["embedding.mmd"].source == "static"


def test_history_is_bounded_and_config_is_checked():
    cfg = AdaptiveConfig(enabled=True, warmup=2, max_history=3)
    history: dict[str, list[float]] = {}
    for k in range(5):
        learn(history, decide(window(k), history, cfg, 0.05), cfg)
    assert len(history["feature.rms"]) == 3
    with pytest.raises(ValueError, match="unknown key"):
        AdaptiveConfig.from_mapping({"enabld": True})
    with pytest.raises(ValueError, match="method"):
        AdaptiveConfig.from_mapping({"method": "median"})
    assert AdaptiveConfig.from_mapping({"statistics": ["feature.*"]}).statistics == ("feature.*",)

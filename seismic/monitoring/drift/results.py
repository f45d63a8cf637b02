"""Result objects of the drift tests; ``to_dict()`` gives the JSON report's per-window entries."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def _num(value: float | None) -> float | None:
    """JSON has no NaN/Inf: they become null (an undefined statistic), never a parse error downstream."""
    return None if value is None or not math.isfinite(value) else float(value)


@dataclass(frozen=True)
class TestResult:
    """One statistic. ``threshold`` is the effect size in force: max(configured minimum, calibrated).

    ``p_value`` is None for distances without a test of their own (Wasserstein, PSI, JS): they borrow the
    significance of their family's test (KS for a feature, chi-square for predictions).
    """

    test: str
    statistic: float
    effect_size: float
    threshold: float
    drifted: bool
    p_value: float | None = None
    p_adjusted: float | None = None

    @property
    def significant_at(self) -> float | None:
        return self.p_adjusted if self.p_adjusted is not None else self.p_value

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "statistic": _num(self.statistic),
            "p_value": _num(self.p_value),
            "p_adjusted": _num(self.p_adjusted),
            "effect_size": _num(self.effect_size),
            "threshold": _num(self.threshold),
            "drifted": bool(self.drifted),
        }


@dataclass(frozen=True)
class Histogram:
    """Counts of both samples on shared bin edges (for the HTML report's ref-vs-current plots)."""

    edges: list[float]
    reference: list[int]
    current: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [_num(e) for e in self.edges], "reference": self.reference, "current": self.current}


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    gate: str  # the test whose verdict is the feature's
    tests: dict[str, TestResult]
    n_reference: int
    n_current: int
    n_nonfinite: int  # current rows with NaN/Inf in this feature, left out of the tests
    histogram: Histogram | None = None

    @property
    def drifted(self) -> bool:
        return self.tests[self.gate].drifted

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "drifted": self.drifted,
            "gate": self.gate,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_nonfinite": self.n_nonfinite,
            "tests": {k: v.to_dict() for k, v in self.tests.items()},
            "histogram": None if self.histogram is None else self.histogram.to_dict(),
        }


@dataclass(frozen=True)
class PredictionDrift:
    """``share``: the class whose share changed most relative to its threshold (``share_class``)."""

    chi2: TestResult
    js: TestResult
    share: TestResult
    share_class: int
    reference_distribution: list[float]
    current_distribution: list[float]

    @property
    def drifted(self) -> bool:
        return self.js.drifted or self.share.drifted

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "tests": {"chi2": self.chi2.to_dict(), "js": self.js.to_dict(), "share": self.share.to_dict()},
            "share_class": self.share_class,
            "reference_distribution": self.reference_distribution,
            "current_distribution": self.current_distribution,
        }


@dataclass(frozen=True)
class EmbeddingDrift:
    mmd: TestResult
    classifier: TestResult
    combine: str
    n_reference: int
    n_current: int
    projection: dict[str, list[list[float]]] | None = None  # PCA (reference basis): 2D points per side

    @property
    def drifted(self) -> bool:
        votes = (self.mmd.drifted, self.classifier.drifted)
        return all(votes) if self.combine == "all" else any(votes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "combine": self.combine,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "tests": {"mmd": self.mmd.to_dict(), "classifier": self.classifier.to_dict()},
            "projection": self.projection,
        }


@dataclass(frozen=True)
class PolarityCheck:
    """Score 1: the reference's polarity; -1: reversed (see :mod:`seismic.monitoring.drift.polarity`)."""

    score: float
    threshold: float
    p_value: float
    drifted: bool
    informative: bool  # False: the reference has no sign asymmetry to compare with, or no class had rows
    classes_used: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": bool(self.drifted),
            "informative": bool(self.informative),
            "score": _num(self.score),
            "threshold": _num(self.threshold),
            "p_value": _num(self.p_value),
            "classes_used": int(self.classes_used),
        }


@dataclass
class WindowDrift:
    """One comparison: a window of current rows against a reference (the baseline or the previous window).

    ``status`` is ``"insufficient_data"`` when every family had fewer rows than ``min_rows``: then no test
    ran and nothing is reported as drift. ``rows`` counts the rows each family given saw (``raw``,
    ``predictions``, ``embedding``); a family below ``min_rows`` is listed in ``insufficient`` and not
    tested. ``raw``/``predictions``/``embedding`` are None when their input was not given or too small;
    ``polarity`` when there were no features (or polarity checks are off).
    """

    window: dict[str, Any]
    n_current: int
    status: str
    features: list[FeatureDrift] = field(default_factory=list)
    predictions: PredictionDrift | None = None
    embedding: EmbeddingDrift | None = None
    polarity: PolarityCheck | None = None
    rows: dict[str, int] = field(default_factory=dict)
    insufficient: list[str] = field(default_factory=list)

    @property
    def raw_drifted(self) -> bool:
        return any(f.drifted for f in self.features)

    @property
    def drifted(self) -> bool:
        """The combined verdict: any family drifted."""
        parts = (
            self.raw_drifted,
            self.predictions is not None and self.predictions.drifted,
            self.embedding is not None and self.embedding.drifted,
            self.polarity is not None and self.polarity.drifted,
        )
        return self.status == "ok" and any(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "status": self.status,
            "drifted": self.drifted,
            "n_current": self.n_current,
            "rows": dict(self.rows),
            "insufficient_families": list(self.insufficient),
            "raw": {
                "drifted": self.raw_drifted,
                "drifted_features": [f.name for f in self.features if f.drifted],
                "features": [f.to_dict() for f in self.features],
            },
            "predictions": None if self.predictions is None else self.predictions.to_dict(),
            "embedding": None if self.embedding is None else self.embedding.to_dict(),
            "polarity": None if self.polarity is None else self.polarity.to_dict(),
        }

"""The drift detector: fit a calibrated baseline on reference arrays once, then compare windows with it.

The monitoring job's API (plain numpy arrays, so it does not depend on the reference profile's format)::

    baseline = fit_baseline(config, features=ref_f, feature_names=FEATURE_NAMES, predictions=ref_cls,
                            n_classes=6, embeddings=ref_emb, groups=ref_inline)
    result = compare(baseline, features=cur_f, predictions=cur_cls, embeddings=cur_emb,
                     window={"id": "2024-05-01T10:00", "against": "baseline"})
    result.drifted, result.to_dict()

Any of the three families may be left out (None) on both sides. The features may come from a sample of
the rows (the inference log computes them for a rate-capped sample): pass that sample's predicted classes
as ``feature_predictions`` (the polarity check needs them), and each family is tested on the rows it has,
or reported as ``insufficient`` when those are fewer than ``min_rows``. To compare with the previous window
instead of the baseline, fit a baseline on that window's arrays (its chunks calibrate it).

Verdicts: p-values are corrected (Bonferroni or BH) within each family of one comparison: the KS tests
of all features, the chi-square test, the two embedding tests. Not across families: a permutation p-value
cannot go below ``1 / (P + 1)``, so a correction over ~27 tests would make MMD with 500 permutations
unable to reach alpha = 0.05 at all. The combined verdict is an OR of three families, so its nominal level
is up to 3 alpha; what bounds the false alarms in practice is the effect-size rule. A statistic drifts
when its family's test is significant after correction AND its effect size reaches its threshold
(:mod:`seismic.monitoring.drift.calibration`); a feature drifts by its ``raw.gate`` statistic; the window
drifts when any family does (embedding: per ``embedding.combine``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from seismic.monitoring.drift import statistics as drift
from seismic.monitoring.drift.calibration import chunk_ids, threshold_from_null
from seismic.monitoring.drift.config import RAW_TESTS, DriftConfig
from seismic.monitoring.drift.embedding import classifier_test, median_bandwidth, mmd_test, pca_basis
from seismic.monitoring.drift.polarity import PolarityModel, check_polarity, fit_polarity
from seismic.monitoring.drift.results import (
    EmbeddingDrift,
    FeatureDrift,
    Histogram,
    PredictionDrift,
    TestResult,
    WindowDrift,
)

_HIST_BINS = 30
_PROJECTION_POINTS = 300  # per side in the report's embedding plot


@dataclass
class Baseline:
    """Reference arrays plus everything fixed at fit time: bins, scales, bandwidth, thresholds."""

    config: DriftConfig
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    predictions: np.ndarray | None = None
    n_classes: int = 0
    embeddings: np.ndarray | None = None  # capped at embedding.max_reference rows
    edges: list[np.ndarray] = field(default_factory=list)
    scales: np.ndarray | None = None
    bandwidth: float = 1.0
    emb_mean: np.ndarray | None = None
    emb_std: np.ndarray | None = None
    pca: tuple[np.ndarray, np.ndarray] | None = None
    polarity: PolarityModel | None = None
    thresholds: dict[str, Any] = field(default_factory=dict)  # test -> [F] (raw) or float
    null: dict[str, Any] = field(default_factory=dict)  # the chunk values behind the thresholds
    n_surveys: int | None = None  # surveys in the reference, when known
    single_survey_widening: float | None = None  # the raw thresholds' factor for a one-survey reference

    def summary(self) -> dict[str, Any]:
        """JSON-able description for the report (sizes and thresholds in force)."""
        thr = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.thresholds.items()}
        return {
            "n_reference": None if self.features is None else len(self.features),
            "n_reference_embeddings": None if self.embeddings is None else len(self.embeddings),
            "feature_names": list(self.feature_names),
            "n_classes": self.n_classes,
            "bandwidth": self.bandwidth,
            "calibrated": bool(self.null),
            "thresholds": thr,
            "polarity_threshold": None if self.polarity is None else _finite_or_none(self.polarity.threshold),
            "n_surveys": self.n_surveys,
            "single_survey_widening": self.single_survey_widening,
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _finite(column: np.ndarray) -> np.ndarray:
    return column[np.isfinite(column)]


def _cap(x: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    return x if len(x) <= cap else x[np.sort(rng.choice(len(x), cap, replace=False))]


def _raw_effects(b: Baseline, ref: np.ndarray, cur: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Effects ``[F, 4]`` (RAW_TESTS order) and KS p-values ``[F]``; NaN effects/p=1 if a side is empty."""
    effects = np.full((ref.shape[1], len(RAW_TESTS)), np.nan)
    p = np.ones(ref.shape[1])
    for j in range(ref.shape[1]):
        r, c = _finite(ref[:, j]), _finite(cur[:, j])
        if len(r) and len(c):
            values, p[j] = drift.raw_statistics(r, c, b.edges[j], float(b.scales[j]))
            effects[j] = [values[t] for t in RAW_TESTS]
    return effects, p


def _embedding_effects(b: Baseline, ref: np.ndarray, cur: np.ndarray, permutations: int, seed: int):
    e = b.config.embedding
    mmd = mmd_test(ref, cur, bandwidth=b.bandwidth, permutations=permutations, seed=seed)
    clf = classifier_test(
        ref,
        cur,
        l2=e.classifier.l2,
        seed=seed,
        mean=b.emb_mean,
        std=b.emb_std,
    )
    return mmd, clf


def fit_baseline(
    config: DriftConfig,
    *,
    features: np.ndarray | None = None,
    feature_names: tuple[str, ...] | list[str] | None = None,
    predictions: np.ndarray | None = None,
    n_classes: int | None = None,
    embeddings: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    embedding_groups: np.ndarray | None = None,
    n_surveys: int | None = None,
    surveys: np.ndarray | None = None,
    embedding_surveys: np.ndarray | None = None,
) -> Baseline:
    """Fix bins, scales, bandwidth and (``calibration.enabled``) calibrated thresholds on the reference.

    ``features`` and ``predictions`` have one row per reference window; ``groups`` (e.g. survey id, or
    survey x inline block) says which rows belong together for calibration chunks: chunks should differ
    from each other the way a current window differs from the reference (see
    :mod:`seismic.monitoring.drift.calibration`). ``embeddings`` may be a sample of other rows (a reference
    profile keeps a few thousand) with their own ``embedding_groups``; when they have as many rows as the
    others they default to ``groups``. ``n_surveys`` 1: the chunks cannot show how surveys differ, so the
    raw thresholds are widened by ``calibration.single_survey_widening`` (:attr:`Baseline.summary` says so).
    ``surveys`` (and ``embedding_surveys``): the survey of each row. With contiguous chunking and two or more
    surveys, a chunk is compared with the rest of the reference outside its own survey, as a window from a
    new survey is: against a rest that still holds the other half of its survey a chunk looks closer to the
    reference than a new survey does, and the thresholds came out too low (benchmarks/drift.py).
    """
    sizes = {len(a) for a in (features, predictions) if a is not None}
    if len(sizes) > 1 or (not sizes and embeddings is None):
        raise ValueError(
            f"fit_baseline: give at least one reference array, features and predictions with the same "
            f"rows; got {sizes}"
        )
    n_rows = sizes.pop() if sizes else len(embeddings)
    if embeddings is not None and len(embeddings) == n_rows:
        embedding_groups = groups if embedding_groups is None else embedding_groups
        embedding_surveys = surveys if embedding_surveys is None else embedding_surveys
    rng = np.random.default_rng(config.seed)
    b = Baseline(config=config, n_surveys=n_surveys)
    if n_rows > config.raw.max_rows:  # the same rows of features, predictions and groups
        keep = np.sort(rng.choice(n_rows, config.raw.max_rows, replace=False))
        features, predictions = (None if a is None else np.asarray(a)[keep] for a in (features, predictions))
        groups, n_rows = (None if groups is None else np.asarray(groups)[keep]), len(keep)
        surveys = None if surveys is None else np.asarray(surveys)[keep]
    if features is not None:
        features = np.asarray(features, dtype=np.float64)
        names = (
            tuple(feature_names)
            if feature_names is not None
            else tuple(f"f{i}" for i in range(features.shape[1]))
        )
        if features.ndim != 2 or features.shape[1] != len(names):
            raise ValueError(
                f"features must be [N, {len(names)}] (one column per name), got {features.shape}"
            )
        b.features, b.feature_names = features, names
        b.edges = [
            drift.quantile_edges(_finite(c), config.raw.bins) if _finite(c).size else np.zeros(0)
            for c in features.T
        ]
        b.scales = np.array([drift.feature_scale(_finite(c)) if _finite(c).size else 1.0 for c in features.T])
    if predictions is not None:
        if n_classes is None:
            raise ValueError("fit_baseline: predictions need n_classes")
        b.predictions, b.n_classes = np.asarray(predictions), int(n_classes)
        drift.class_distribution(b.predictions, b.n_classes)  # range check now, not at the first window
    if embeddings is not None:
        emb = np.asarray(embeddings, dtype=np.float32)
        capped = _cap(emb, config.embedding.max_reference, rng)
        b.embeddings = capped
        b.bandwidth = median_bandwidth(capped, config.embedding.mmd.bandwidth_sample, config.seed)
        b.emb_mean, b.emb_std = capped.mean(axis=0, dtype=np.float64), capped.std(axis=0, dtype=np.float64)
        b.pca = pca_basis(capped)
    _set_thresholds(b, features, predictions, groups, n_rows, surveys)
    widening = config.calibration.single_survey_widening
    if n_surveys == 1 and config.calibration.enabled and features is not None and widening > 1:
        b.single_survey_widening = widening
        for t in RAW_TESTS:
            b.thresholds[t] = b.thresholds[t] * widening
    if features is not None and config.polarity.enabled:
        b.polarity = fit_polarity(
            b.feature_names,
            features,
            b.predictions,
            b.n_classes,
            groups,
            n_chunks=config.calibration.n_chunks,
            spread=config.calibration.chunking == "spread",
            z=config.calibration.z if config.calibration.enabled else None,
            min_class_rows=config.polarity.min_class_rows,
        )
    if embeddings is not None:
        _set_embedding_thresholds(
            b, np.asarray(embeddings, dtype=np.float32), embedding_groups, embedding_surveys
        )
    return b


def _held_out(
    config: DriftConfig, ids: np.ndarray, surveys: np.ndarray | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(chunk, rest)`` row masks per chunk; the rest leaves out the chunk's surveys when there are others
    (contiguous chunking: new surveys are what the thresholds stand for)."""
    surveys = None if surveys is None or config.calibration.chunking == "spread" else np.asarray(surveys)
    if surveys is not None and (len(surveys) != len(ids) or len(np.unique(surveys)) < 2):
        surveys = None
    pairs = []
    for k in range(int(ids.max()) + 1):
        inside = ids == k
        rest = ~inside if surveys is None else ~np.isin(surveys, np.unique(surveys[inside]))
        pairs.append((inside, rest if rest.any() else ~inside))
    return pairs


def _set_thresholds(b: Baseline, features, predictions, groups, n_rows: int, surveys=None) -> None:
    """Configured minima, raised by the chunk-vs-rest null distribution when calibration is on."""
    c = b.config
    if b.features is not None:
        for t in RAW_TESTS:
            b.thresholds[t] = np.full(len(b.feature_names), c.raw.min_effect[t])
    b.thresholds["predictions_js"] = c.predictions.min_effect
    if b.predictions is not None:
        b.thresholds["predictions_share"] = np.full(b.n_classes, c.predictions.min_share_change)
    b.thresholds["mmd"] = c.embedding.mmd.min_effect
    b.thresholds["classifier"] = c.embedding.classifier.min_auc
    if not c.calibration.enabled:
        return
    if features is None and predictions is None:
        return
    ids = chunk_ids(n_rows, c.calibration.n_chunks, groups, spread=c.calibration.chunking == "spread")
    rng = np.random.default_rng(c.seed + 1)
    raw, pred, share = [], [], []
    for inside, rest in _held_out(c, ids, surveys):
        if features is not None:
            f = np.asarray(features, dtype=np.float64)
            raw.append(_raw_effects(b, _cap(f[rest], c.raw.max_rows, rng), f[inside])[0])
        if predictions is not None:
            p = np.asarray(predictions)
            ref_counts = drift.class_distribution(p[rest], b.n_classes)
            cur_counts = drift.class_distribution(p[inside], b.n_classes)
            pred.append(drift.js_distance(ref_counts, cur_counts))
            share.append(_share_change(ref_counts, cur_counts))
    z = c.calibration.z
    if raw:
        null = np.nan_to_num(np.stack(raw))  # [chunks, F, tests]
        cal = threshold_from_null(null, z)
        for i, t in enumerate(RAW_TESTS):
            b.thresholds[t] = np.maximum(b.thresholds[t], cal[:, i])
        b.null["raw"] = null
    if pred:
        _raise_threshold(b, "predictions_js", pred)
        # a signed change scatters around 0, so not on the log scale of the distances: |N(0, s)| with s
        # the chunks' RMS change (on the log scale, chunks that happen to match the rest blow up the spread)
        null = np.stack(share)  # [chunks, classes], signed
        spread = np.sqrt((null * null).mean(axis=0))
        calibrated = np.maximum(np.abs(null).max(axis=0), c.predictions.share_z * spread)
        b.thresholds["predictions_share"] = np.maximum(b.thresholds["predictions_share"], calibrated)
        b.null["predictions_share"] = null


def _share_change(ref_counts: np.ndarray, cur_counts: np.ndarray) -> np.ndarray:
    """``current share - reference share`` per class."""
    return cur_counts / max(1.0, cur_counts.sum()) - ref_counts / max(1.0, ref_counts.sum())


def _set_embedding_thresholds(
    b: Baseline, emb: np.ndarray, groups: np.ndarray | None, surveys: np.ndarray | None = None
) -> None:
    """MMD^2 and classifier AUC of each embedding chunk against the rest raise their thresholds."""
    c = b.config
    if not c.calibration.enabled:
        return
    ids = chunk_ids(len(emb), c.calibration.n_chunks, groups, spread=c.calibration.chunking == "spread")
    rng = np.random.default_rng(c.seed + 2)
    mmd, auc = [], []
    for k, (inside, rest) in enumerate(_held_out(c, ids, surveys)):
        ref_e = _cap(emb[rest], c.embedding.max_reference, rng)
        cur_e = _cap(emb[inside], c.embedding.max_current, rng)
        m, a = _embedding_effects(b, ref_e, cur_e, 0, c.seed + k)
        mmd.append(m.mmd2)
        auc.append(a.auc)
    _raise_threshold(b, "mmd", mmd)
    _raise_threshold(b, "classifier", auc)


def _raise_threshold(b: Baseline, key: str, values: list[float]) -> None:
    calibrated = float(threshold_from_null(np.array(values), b.config.calibration.z))
    b.thresholds[key] = max(b.thresholds[key], calibrated)
    b.null[key] = values


def _histogram(ref: np.ndarray, cur: np.ndarray) -> Histogram:
    pooled = np.concatenate([ref, cur])
    lo, hi = np.quantile(pooled, [0.005, 0.995])
    if not hi > lo:
        lo, hi = float(pooled.min()) - 0.5, float(pooled.max()) + 0.5
    edges = np.linspace(lo, hi, _HIST_BINS + 1)
    count = lambda x: np.histogram(np.clip(x, lo, hi), edges)[0].tolist()  # noqa: E731
    return Histogram(edges.tolist(), count(ref), count(cur))


def compare(
    baseline: Baseline,
    *,
    features: np.ndarray | None = None,
    predictions: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    feature_predictions: np.ndarray | None = None,
    window: dict[str, Any] | None = None,
) -> WindowDrift:
    """Test one window of current rows against the baseline; the families given must match the baseline's.

    ``predictions`` and ``embeddings`` cover the same rows; ``features`` those rows too, or a sample of them
    whose classes are ``feature_predictions``.
    """
    b, c = baseline, baseline.config
    given = {"features": features, "predictions": predictions, "embeddings": embeddings}
    for name, value in given.items():
        if value is not None and getattr(b, name) is None:
            raise ValueError(f"compare: current {name} given but the baseline has no reference {name}")
    if all(v is None for v in given.values()):
        raise ValueError("compare: give at least one current array (features, predictions or embeddings)")
    if features is not None and feature_predictions is None:
        feature_predictions = predictions
    aligned = [len(a) for a in (predictions, embeddings) if a is not None]
    if features is not None and feature_predictions is not None:
        aligned_f = {len(features), len(feature_predictions)}
        if len(aligned_f) != 1:
            raise ValueError(f"compare: features and their predictions differ in rows: {sorted(aligned_f)}")
    if len(set(aligned)) > 1:
        raise ValueError(f"compare: predictions and embeddings must have the same rows; got {aligned}")
    n_f = None if features is None else len(features)
    n = aligned[0] if aligned else n_f
    info = dict(window or {})
    rows = {
        family: len(value)
        for family, value in (("raw", features), ("predictions", predictions), ("embedding", embeddings))
        if value is not None
    }
    insufficient = sorted(family for family, count in rows.items() if count < c.min_rows)
    if len(insufficient) == len(rows):
        return WindowDrift(
            window=info, n_current=n, status="insufficient_data", rows=rows, insufficient=insufficient
        )
    if "raw" in insufficient:
        features = feature_predictions = None
    if "predictions" in insufficient:
        predictions = None
    if "embedding" in insufficient:
        embeddings = None

    rng = np.random.default_rng(c.seed)
    families: list[list[float]] = []  # p-values per family, in the order the results are built below
    if features is not None:
        cur_f = _cap(np.asarray(features, dtype=np.float64), c.raw.max_rows, rng)
        effects, ks_p = _raw_effects(b, b.features, cur_f)
        families.append(ks_p.tolist())
    if predictions is not None:
        ref_counts = drift.class_distribution(b.predictions, b.n_classes)
        cur_counts = drift.class_distribution(np.asarray(predictions), b.n_classes)
        chi2, chi2_p = drift.chi2_test(ref_counts, cur_counts)
        families.append([chi2_p])
    if embeddings is not None:
        cur_e = _cap(np.asarray(embeddings, dtype=np.float32), c.embedding.max_current, rng)
        mmd, clf = _embedding_effects(b, b.embeddings, cur_e, c.embedding.mmd.permutations, c.seed)
        families.append([mmd.p_value, clf.p_value])
    adjusted = iter(
        [q for fam in families for q in drift.adjust_pvalues(np.array(fam), c.correction).tolist()]
    )
    raw_p = iter([p for fam in families for p in fam])

    result = WindowDrift(window=info, n_current=n, status="ok", rows=rows, insufficient=insufficient)
    if features is not None:
        for j, name in enumerate(b.feature_names):
            p, p_adj = next(raw_p), next(adjusted)
            significant = p_adj < c.alpha
            tests = {}
            for i, t in enumerate(RAW_TESTS):
                effect, thr = float(effects[j, i]), float(b.thresholds[t][j])
                hit = bool(significant and effect >= thr)
                ks = t == "ks"
                tests[t] = TestResult(t, effect, effect, thr, hit, p if ks else None, p_adj if ks else None)
            col = cur_f[:, j]
            ok = np.isfinite(col)
            feat = FeatureDrift(
                name, c.raw.gate, tests, len(_finite(b.features[:, j])), int(ok.sum()), int((~ok).sum())
            )
            if feat.drifted:
                feat = replace(feat, histogram=_histogram(_finite(b.features[:, j]), col[ok]))
            result.features.append(feat)
    if predictions is not None:
        p, p_adj = next(raw_p), next(adjusted)
        js = drift.js_distance(ref_counts, cur_counts)
        thr = float(b.thresholds["predictions_js"])
        hit = bool(p_adj < c.alpha and js >= thr)
        changes, share_thr = np.abs(_share_change(ref_counts, cur_counts)), b.thresholds["predictions_share"]
        worst = int(np.argmax(changes / np.maximum(share_thr, 1e-12)))
        change, change_thr = float(changes[worst]), float(share_thr[worst])
        share_hit = bool(p_adj < c.alpha and change >= change_thr)
        result.predictions = PredictionDrift(
            chi2=TestResult("chi2", chi2, js, thr, hit or share_hit, p, p_adj),
            js=TestResult("js", js, js, thr, hit),
            share=TestResult("share", change, change, change_thr, share_hit, p, p_adj),
            share_class=worst,
            reference_distribution=(ref_counts / ref_counts.sum()).tolist(),
            current_distribution=(cur_counts / max(1.0, cur_counts.sum())).tolist(),
        )
    if features is not None and b.polarity is not None:
        result.polarity = check_polarity(b.polarity, features, feature_predictions, c.alpha)
    if embeddings is not None:
        tests = []
        for test, stat, thr_key in (("mmd", mmd.mmd2, "mmd"), ("classifier", clf.auc, "classifier")):
            p, p_adj = next(raw_p), next(adjusted)
            thr = float(b.thresholds[thr_key])
            tests.append(TestResult(test, stat, stat, thr, bool(p_adj < c.alpha and stat >= thr), p, p_adj))
        result.embedding = EmbeddingDrift(
            tests[0], tests[1], c.embedding.combine, len(b.embeddings), len(cur_e), _projection(b, cur_e, rng)
        )
    return result


def _projection(b: Baseline, cur: np.ndarray, rng: np.random.Generator) -> dict[str, list[list[float]]]:
    mean, comps = b.pca
    pts = {
        "reference": _cap(b.embeddings, _PROJECTION_POINTS, rng),
        "current": _cap(cur, _PROJECTION_POINTS, rng),
    }
    return {k: np.round((v - mean) @ comps.T, 4).tolist() for k, v in pts.items()}

"""The reversed-polarity check (monitoring.drift.polarity) via the detector, on feature tables whose
odd columns carry a class-dependent sign, as reflectors of different facies do."""

import numpy as np
import pytest

from seismic.features import FEATURE_NAMES, ODD_FEATURE_NAMES, window_features
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import compare, fit_baseline
from seismic.monitoring.drift.polarity import fit_polarity

ODD = [FEATURE_NAMES.index(n) for n in ODD_FEATURE_NAMES]
SKEW = FEATURE_NAMES.index("skewness")


def table(rng, n, signs, *, groups=8, shares=None):
    """Rows of ``len(signs)`` classes; odd columns ~ sign[c] * 0.5 plus survey (group) and row noise."""
    classes = rng.choice(len(signs), n, p=shares)
    group = rng.integers(0, groups, n)
    f = rng.normal(size=(n, len(FEATURE_NAMES)))
    offset = rng.normal(0, 0.1, (groups, len(ODD)))
    f[:, ODD] = np.asarray(signs)[classes, None] * 0.5 + offset[group] + rng.normal(0, 0.4, (n, len(ODD)))
    return f, classes, group


def reversed_(f):
    out = f.copy()
    out[:, ODD] *= -1
    return out


@pytest.fixture
def baseline():
    rng = np.random.default_rng(0)
    f, c, g = table(rng, 6000, [1.0, -1.0, 0.0], groups=16)
    return fit_baseline(
        DriftConfig(), features=f, feature_names=FEATURE_NAMES, predictions=c, n_classes=3, groups=g
    )


def test_features_of_a_reversed_window_negate_exactly_the_odd_columns():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, size=(5, 1, 8, 64)).astype(np.float32) - 1.5  # skewed, so odd columns are non-zero
    a, b = window_features(x, 2.0), window_features(-x, 2.0)
    odd = np.isin(np.arange(len(FEATURE_NAMES)), ODD)
    np.testing.assert_allclose(b[:, odd], -a[:, odd], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(b[:, ~odd], a[:, ~odd], rtol=1e-12, atol=1e-15)
    assert np.abs(a[:, SKEW]).min() > 0.1


def test_same_polarity_scores_near_one_and_does_not_drift(baseline):
    f, c, _ = table(np.random.default_rng(2), 2000, [1.0, -1.0, 0.0])
    check = compare(baseline, features=f, predictions=c).polarity
    assert check.informative and not check.drifted
    assert 0.7 < check.score < 1.3
    assert check.classes_used == 3


def test_reversed_data_with_balanced_classes_is_caught_where_the_marginal_is_blind(baseline):
    f, c, _ = table(np.random.default_rng(3), 2000, [1.0, -1.0, 0.0], shares=[0.4, 0.4, 0.2])
    result = compare(baseline, features=reversed_(f), predictions=c)
    assert result.polarity.drifted and result.drifted
    assert -1.3 < result.polarity.score < -0.7 and result.polarity.p_value < 1e-6
    # the classes' opposite signs cancel in the marginal skewness: the per-feature tests see nothing
    assert not result.raw_drifted


def test_data_without_sign_asymmetry_are_not_called_reversed(baseline):
    f, c, _ = table(np.random.default_rng(4), 2000, [0.0, 0.0, 0.0])  # a phase rotation looks like this
    check = compare(baseline, features=f, predictions=c).polarity
    assert abs(check.score) < 0.2 and not check.drifted


@pytest.mark.parametrize("scale", [2000.0, 1e-3])
def test_a_wildly_scaled_survey_keeps_the_score_in_range(baseline, scale):
    """The window means are in amplitude units: a real cube at 2,000x the training scale scored 126.7."""
    f, c, _ = table(np.random.default_rng(11), 2000, [1.0, -1.0, 0.0])
    means = [FEATURE_NAMES.index(n) for n in ("mean", "core_mean")]
    f[:, means] *= scale
    same = compare(baseline, features=f, predictions=c).polarity
    flipped = compare(baseline, features=reversed_(f), predictions=c).polarity
    assert 0.7 < same.score < 1.3 and not same.drifted
    assert -1.3 < flipped.score < -0.7 and flipped.drifted


def test_a_reference_without_sign_asymmetry_is_uninformative_and_never_drifts():
    rng = np.random.default_rng(5)
    f, c, g = table(rng, 4000, [0.0, 0.0])
    b = fit_baseline(
        DriftConfig(), features=f, feature_names=FEATURE_NAMES, predictions=c, n_classes=2, groups=g
    )
    cur, cc, _ = table(rng, 2000, [1.0, -1.0])
    check = compare(b, features=reversed_(cur), predictions=cc).polarity
    assert not check.drifted


def test_without_predictions_one_class_carries_the_check():
    rng = np.random.default_rng(6)
    f, _, g = table(rng, 4000, [1.0])
    b = fit_baseline(DriftConfig(), features=f, feature_names=FEATURE_NAMES, groups=g)
    cur, _, _ = table(rng, 1000, [1.0])
    assert not compare(b, features=cur).polarity.drifted
    assert compare(b, features=reversed_(cur)).polarity.drifted


def test_a_per_class_reference_without_current_classes_is_uninformative(baseline):
    f, _, _ = table(np.random.default_rng(10), 2000, [1.0, -1.0, 0.0])
    check = compare(baseline, features=reversed_(f)).polarity
    assert not check.informative and not check.drifted and check.classes_used == 0


def test_rare_classes_and_nonfinite_rows_are_left_out(baseline):
    f, c, _ = table(np.random.default_rng(7), 2000, [1.0, -1.0, 0.0], shares=[0.99, 0.005, 0.005])
    f[:10, SKEW] = np.nan
    check = compare(baseline, features=reversed_(f), predictions=c).polarity
    assert check.classes_used == 1 and check.drifted


def test_config_switch_and_tables_without_odd_columns():
    rng = np.random.default_rng(8)
    f, c, g = table(rng, 3000, [1.0, -1.0])
    off = DriftConfig.from_mapping({"polarity": {"enabled": False}})
    b = fit_baseline(off, features=f, feature_names=FEATURE_NAMES, predictions=c, n_classes=2, groups=g)
    assert b.polarity is None and compare(b, features=f, predictions=c).polarity is None
    names = [f"x{i}" for i in range(len(FEATURE_NAMES))]
    assert fit_polarity(names, f, c, 2, g, n_chunks=10, z=3.0, min_class_rows=30) is None
    with pytest.raises(ValueError, match=r"polarity\.min_class_rows"):
        DriftConfig.from_mapping({"polarity": {"min_class_rows": 1}})


def test_a_reversed_window_reaches_the_report_the_gauges_and_the_alerts(baseline, tmp_path):
    from seismic.monitoring.alerting.engine import AlertSettings, describe
    from seismic.monitoring.drift import adaptive
    from seismic.monitoring.job.metrics import metric_families
    from seismic.monitoring.reports.html_report import write_html_report
    from seismic.monitoring.reports.json_report import ReportSchemaError, build_report, validate_report

    f, c, _ = table(np.random.default_rng(9), 2000, [1.0, -1.0, 0.0], shares=[0.4, 0.4, 0.2])
    result = compare(baseline, features=reversed_(f), predictions=c, window={"id": "w0"})
    report = build_report([result], config=baseline.config, baseline=baseline.summary())
    entry = report["windows"][0]
    assert entry["polarity"]["drifted"] and entry["polarity"]["score"] < -0.7
    assert report["summary"]["verdict"] == "drift"
    assert report["baseline"]["polarity_threshold"] == baseline.polarity.threshold

    assert "REVERSED" in write_html_report(report, tmp_path / "r.html").read_text()
    gauges = {m.name: m.samples[0].value for m in metric_families(report) if len(m.samples) == 1}
    assert gauges["seismic_drift_polarity_score"] == pytest.approx(entry["polarity"]["score"])
    firing = describe(entry, adaptive.decide(entry, {}, adaptive.AdaptiveConfig(), 0.05), AlertSettings())
    assert firing["polarity"].startswith("polarity reversed: score -")

    entry["polarity"]["informative"] = "yes"
    with pytest.raises(ReportSchemaError, match=r"windows\[0\].polarity.informative"):
        validate_report(report)

"""Baseline fitting, calibration and verdicts of the detector; the config's validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from seismic.monitoring.drift.calibration import chunk_ids, threshold_from_null
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import compare, fit_baseline

ROOT = Path(__file__).resolve().parents[2]
FAST = {"embedding": {"mmd": {"permutations": 99}, "max_reference": 1500, "max_current": 1500}}


def _config(**overrides) -> DriftConfig:
    return DriftConfig.from_mapping({**FAST, **overrides})


def _regions(rng, n_groups: int, rows: int, offset_sd: float, shift: float = 0.0, scale: float = 1.0):
    """Spatially correlated rows: each group (an inline block) has its own random offset."""
    offsets = rng.normal(0.0, offset_sd, size=(n_groups, 1, 4))
    feats = (rng.normal(size=(n_groups, rows, 4)) + offsets) * scale + shift
    emb = np.concatenate([feats, rng.normal(size=(n_groups, rows, 4))], axis=2)
    groups = np.repeat(np.arange(n_groups), rows)
    return feats.reshape(-1, 4), emb.reshape(-1, 8).astype(np.float32), groups


def test_default_yaml_is_the_dataclass_default():
    cfg = DriftConfig.from_yaml(ROOT / "configs/drift/default.yaml")
    assert cfg == DriftConfig()
    assert DriftConfig.from_mapping(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"raw": {"gat": "psi"}}, "drift.raw.gat"),
        ({"embedding": {"mmd": {"permutation": 5}}}, "drift.embedding.mmd.permutation"),
        ({"raw": {"min_effect": {"kss": 0.1}}}, "kss"),
        ({"alpha": 2}, "alpha"),
        ({"correction": "holm"}, "correction"),
        ({"calibration": {"chunking": "random"}}, "calibration.chunking"),
        ({"raw": {"gate": "mmd"}}, "raw.gate"),
    ],
)
def test_config_errors_name_the_key(mapping, message):
    with pytest.raises(ValueError, match=message):
        DriftConfig.from_mapping(mapping)


def test_chunks_keep_groups_whole():
    groups = np.repeat([5, 1, 3, 9, 7, 2], [10, 20, 10, 30, 10, 20])
    ids = chunk_ids(len(groups), 4, groups)
    for g in np.unique(groups):
        assert len(np.unique(ids[groups == g])) == 1
    assert set(ids) == set(range(ids.max() + 1)) and ids.max() >= 2
    with pytest.raises(ValueError, match=">= 3 reference groups"):
        chunk_ids(4, 3, np.array([0, 0, 1, 1]))
    np.testing.assert_array_equal(chunk_ids(6, 3), [0, 0, 1, 1, 2, 2])


def test_spread_chunks_deal_groups_across_the_reference():
    groups = np.repeat(np.arange(16) * 2, 5)  # the even inline blocks of a field, 5 rows each
    ids = chunk_ids(len(groups), 20, groups, spread=True)
    assert ids.max() == 7  # 16 groups: 8 chunks of 2
    for g in np.unique(groups):
        assert len(np.unique(ids[groups == g])) == 1
    for k in range(8):  # blocks k and k + 8 (in rank): one chunk spans the field
        np.testing.assert_array_equal(np.unique(groups[ids == k]), [2 * k, 2 * (k + 8)])
    with pytest.raises(ValueError, match=">= 6 reference groups"):
        chunk_ids(10, 20, np.repeat(np.arange(5), 2), spread=True)
    with pytest.raises(ValueError, match="needs reference groups"):
        chunk_ids(10, 20, None, spread=True)


def test_spread_chunking_sees_a_shift_that_local_chunks_hide():
    """A field whose features trend from block to block: a window drawn across all blocks differs from the
    reference far less than one block does, so local chunks set thresholds that hide a moderate shift."""
    rng = np.random.default_rng(3)
    blocks, rows = 32, 200
    trend = np.linspace(-0.4, 0.4, blocks)[:, None, None]

    groups = np.repeat(np.arange(blocks), rows)

    def field(shift: float) -> np.ndarray:
        return (rng.normal(size=(blocks, rows, 4)) + trend + shift).reshape(-1, 4)

    ref = field(0.0)
    verdicts = {}
    for chunking in ("contiguous", "spread"):
        cfg = _config(calibration={"chunking": chunking})
        b = fit_baseline(cfg, features=ref, groups=groups)
        same = field(0.0)[rng.choice(blocks * rows, 2000, replace=False)]
        shifted = field(0.6)[rng.choice(blocks * rows, 2000, replace=False)]
        verdicts[chunking] = (compare(b, features=same).drifted, compare(b, features=shifted).drifted)
    assert verdicts["spread"] == (False, True)
    assert verdicts["contiguous"] == (False, False)


def test_chunks_are_compared_with_the_other_surveys():
    """Halves of one survey share its offset: against a rest that holds the other half, a chunk looks
    closer to the reference than a new survey does. Leaving its survey out raises the thresholds to what
    new surveys need."""
    rng = np.random.default_rng(5)

    def surveys(n: int, rows: int) -> np.ndarray:
        return (rng.normal(size=(n, 2, rows, 4)) + rng.normal(0, 0.25, size=(n, 1, 1, 4))).reshape(-1, 4)

    ref, groups = surveys(8, 600), np.repeat(np.arange(16), 600)
    cfg = _config()
    within = fit_baseline(cfg, features=ref, groups=groups)
    across = fit_baseline(cfg, features=ref, groups=groups, surveys=groups // 2)
    assert (across.thresholds["psi"] > within.thresholds["psi"]).all()
    new = [surveys(1, 1000) for _ in range(40)]  # no shift: other draws of the same survey population
    assert sum(compare(across, features=x).drifted for x in new) < sum(
        compare(within, features=x).drifted for x in new
    )
    one = fit_baseline(cfg, features=ref, groups=groups, surveys=np.zeros(len(ref)))
    np.testing.assert_array_equal(one.thresholds["psi"], within.thresholds["psi"])  # no other survey


def test_threshold_from_null():
    values = np.array([1.0, 2.0, 4.0])
    assert threshold_from_null(values, 0.0) == 4.0
    assert threshold_from_null(values, 1.0) == pytest.approx(2.0 * 2.0)  # log2 values 0, 1, 2: std 1
    assert threshold_from_null(np.zeros((3, 2)), 3.0) == pytest.approx([0.0, 0.0], abs=1e-8)


def test_identical_samples_never_drift():
    rng = np.random.default_rng(0)
    feats, emb, groups = _regions(rng, 20, 60, 0.05)
    preds = rng.integers(0, 3, len(feats))
    b = fit_baseline(_config(), features=feats, predictions=preds, n_classes=3, embeddings=emb, groups=groups)
    r = compare(b, features=feats, predictions=preds, embeddings=emb)
    assert r.status == "ok" and not r.drifted
    assert all(t.effect_size == 0 for f in r.features for t in f.tests.values())


def test_a_million_rows_of_one_distribution_do_not_drift():
    """A shift of 0.01 std is significant at 1e6 rows but far below any effect size that matters."""
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=(1_000_000, 1)), rng.normal(0.01, 1.0, size=(1_000_000, 1))
    cfg = _config(calibration={"enabled": False}, raw={"max_rows": 1_000_000})
    r = compare(fit_baseline(cfg, features=ref), features=cur)
    ks = r.features[0].tests["ks"]
    assert ks.p_adjusted < 1e-6 and not r.drifted
    assert r.features[0].tests["wasserstein"].effect_size == pytest.approx(0.01, abs=0.003)


def test_calibration_bounds_false_alarms_and_keeps_power():
    """Correlated regions: the i.i.d. tests alarm on most no-shift windows; calibrated thresholds do not."""
    rng = np.random.default_rng(2)
    feats, emb, groups = _regions(rng, 30, 100, 0.3)
    calibrated = fit_baseline(_config(), features=feats, embeddings=emb, groups=groups)
    plain = fit_baseline(
        _config(
            calibration={"enabled": False},
            raw={"min_effect": dict.fromkeys(("ks", "wasserstein", "psi", "js"), 0.0)},
            embedding={
                **FAST["embedding"],
                "mmd": {"permutations": 99, "min_effect": 0.0},
                "classifier": {"min_auc": 0.5},
            },
        ),
        features=feats,
        embeddings=emb,
    )
    alarms = {"calibrated": 0, "plain": 0}
    for _ in range(5):
        f, e, _ = _regions(rng, 5, 200, 0.3)
        alarms["calibrated"] += compare(calibrated, features=f, embeddings=e).drifted
        alarms["plain"] += compare(plain, features=f, embeddings=e).drifted
    assert alarms["calibrated"] <= 1 and alarms["plain"] >= 3
    f, e, _ = _regions(rng, 5, 200, 0.3, scale=3.0)
    shifted = compare(calibrated, features=f, embeddings=e)
    assert shifted.raw_drifted and shifted.embedding.drifted


def test_prediction_drift_and_window_statuses():
    rng = np.random.default_rng(3)
    preds = rng.choice(4, size=3000, p=[0.4, 0.3, 0.2, 0.1])
    b = fit_baseline(_config(), predictions=preds, n_classes=4)
    same = compare(b, predictions=rng.choice(4, size=1000, p=[0.4, 0.3, 0.2, 0.1]))
    assert not same.drifted
    changed = compare(b, predictions=rng.choice(4, size=1000, p=[0.1, 0.2, 0.3, 0.4]), window={"id": "w"})
    assert changed.predictions.drifted and changed.drifted and changed.window == {"id": "w"}
    small = compare(b, predictions=preds[:50])
    assert small.status == "insufficient_data" and not small.drifted and small.predictions is None
    with pytest.raises(ValueError, match="no reference features"):
        compare(b, features=np.zeros((300, 2)))


def _mixes(rng, n_groups: int, rows: int, spread: float):
    """Predicted classes of ``n_groups`` groups, each with its own class mix around six equal shares."""
    shares = rng.dirichlet(np.full(6, 1.0 / spread**2), size=n_groups)
    preds = np.concatenate([rng.choice(6, rows, p=p) for p in shares])
    return preds, np.repeat(np.arange(n_groups), rows)


def test_one_class_share_change_beyond_the_natural_variation_is_caught_per_class():
    rng = np.random.default_rng(4)
    preds, groups = _mixes(rng, 24, 500, spread=0.2)
    b = fit_baseline(_config(), predictions=preds, n_classes=6, groups=groups)
    assert b.thresholds["predictions_share"].shape == (6,)
    assert (b.thresholds["predictions_share"] >= 0.05).all()
    quiet = [compare(b, predictions=_mixes(rng, 1, 2000, spread=0.2)[0]) for _ in range(10)]
    assert not any(w.predictions.drifted for w in quiet)
    # one class from its natural ~1/6 to 0.4, the other five shrink alike
    boosted = rng.choice(6, 2000, p=[0.4, 0.12, 0.12, 0.12, 0.12, 0.12])
    result = compare(b, predictions=boosted).predictions
    assert result.share.drifted and result.drifted and result.share_class == 0
    assert not result.js.drifted  # the JS distance of the whole distribution stays under its threshold
    assert result.share.statistic == pytest.approx(
        result.current_distribution[0] - result.reference_distribution[0]
    )
    assert result.to_dict()["tests"]["share"]["threshold"] == pytest.approx(
        b.thresholds["predictions_share"][0]
    )


def test_a_one_survey_reference_widens_the_raw_thresholds_and_the_report_says_so():
    """Chunks of one survey see only its lateral variation, not how surveys differ (single_survey.py)."""
    from seismic.monitoring.reports.json_report import build_report

    feats, _, groups = _regions(np.random.default_rng(5), 20, 100, 0.3)
    fits = {n: fit_baseline(_config(), features=feats, groups=groups, n_surveys=n) for n in (None, 1, 4)}
    for t in ("psi", "ks", "wasserstein", "js"):
        np.testing.assert_allclose(fits[1].thresholds[t], 4.0 * fits[None].thresholds[t])
        np.testing.assert_array_equal(fits[4].thresholds[t], fits[None].thresholds[t])
    reports = {n: build_report([], config=b.config, baseline=b.summary()) for n, b in fits.items()}
    assert "widened 4x" in reports[1]["summary"]["caveat"] and reports[1]["baseline"]["n_surveys"] == 1
    assert "caveat" not in reports[4]["summary"] and "caveat" not in reports[None]["summary"]
    off = fit_baseline(
        _config(calibration={"single_survey_widening": 1.0}), features=feats, groups=groups, n_surveys=1
    )
    assert off.summary()["single_survey_widening"] is None
    with pytest.raises(ValueError, match=r"calibration\.single_survey_widening"):
        _config(calibration={"single_survey_widening": 0.5})

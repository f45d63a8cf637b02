from __future__ import annotations

import re

import numpy as np
import pytest

from seismic.data.acquisition import AcquisitionRanges, Augmentation
from seismic.data.datamodule import SeismicDataModule
from seismic.data.sources import materialise_surveys, survey_configs
from seismic.data.survey import Survey

SMALL = {"n_inlines": 40, "n_crosslines": 16, "n_samples": 96}
RANGES = {"wavelet_peak_hz": [15, 60], "wavelet_phase_deg": [-90, 90], "snr_db": [3, 20]}


def test_each_seed_draws_its_acquisition_inside_the_ranges_and_always_the_same():
    ranges = AcquisitionRanges.from_mapping(RANGES)
    draws = [ranges.draw(seed) for seed in range(200)]
    assert draws[:5] == [ranges.draw(seed) for seed in range(5)]
    for name, (low, high) in RANGES.items():
        values = np.array([d[name] for d in draws])
        assert values.min() >= low and values.max() <= high
        assert len(np.unique(values)) > 150
    # peak frequency is log-uniform: as many surveys below the geometric mean (30 Hz) as above it
    below = np.mean([d["wavelet_peak_hz"] < 30 for d in draws])
    assert 0.4 < below < 0.6


def test_unset_ranges_keep_the_survey_values():
    configs = survey_configs({**SMALL, "seed": [1, 2], "wavelet_peak_hz": 25.0}, {"snr_db": [0, 5]})
    assert [c.wavelet_peak_hz for c in configs] == [25.0, 25.0]
    assert all(0 <= c.snr_db <= 5 for c in configs) and configs[0].snr_db != configs[1].snr_db
    assert (
        survey_configs({**SMALL, "seed": 4})[0].snr_db == survey_configs({**SMALL, "seed": 4}, {})[0].snr_db
    )


@pytest.mark.parametrize(
    ("mapping", "names"),
    [
        ({"wavelet_peak_hz": [40, 20]}, "data.acquisition.wavelet_peak_hz"),
        ({"wavelet_peak_hz": [0, 20]}, "data.acquisition.wavelet_peak_hz"),
        ({"snr_db": 10}, "data.acquisition.snr_db"),
        ({"snr_db": ["a", 3]}, "data.acquisition.snr_db"),
        ({"noise": [1, 2]}, "data.acquisition: unknown key(s) ['noise']"),
    ],
)
def test_bad_ranges_name_the_key(mapping, names):
    with pytest.raises(ValueError, match=re.escape(names)):
        AcquisitionRanges.from_mapping(mapping)


def test_surveys_of_other_acquisitions_are_other_cached_surveys(tmp_path):
    plain = materialise_surveys("synthetic", tmp_path, survey={**SMALL, "seed": [1]})
    varied = materialise_surveys("synthetic", tmp_path, survey={**SMALL, "seed": [1]}, acquisition=RANGES)
    assert plain != varied
    a, b = Survey.load(plain[0]), Survey.load(varied[0])
    np.testing.assert_array_equal(a.labels, b.labels)  # same geology
    assert not np.allclose(a.amplitudes, b.amplitudes)  # imaged otherwise


def test_acquisition_ranges_are_refused_for_recorded_data(tmp_path):
    with pytest.raises(ValueError, match=r"data\.acquisition: acquisition ranges apply to synthetic surveys"):
        materialise_surveys("segy", tmp_path, segy={"path": "x.sgy"}, acquisition={"snr_db": [1, 2]})


def test_gain_augmentation_scales_each_window_within_its_range():
    rng = np.random.default_rng(0)
    windows = np.ones((4000, 1, 16), dtype=np.float32)
    out = Augmentation.from_mapping({"gain": [0.5, 2.0]}).apply(windows.copy(), rng)
    gains = out[:, 0, 0]
    assert np.all(out == gains[:, None, None])
    assert gains.min() >= 0.5 and gains.max() <= 2.0
    assert 0.4 < np.mean(gains < 1.0) < 0.6  # log-uniform: centred on 1
    same = Augmentation.from_mapping({}).apply(windows.copy(), rng)
    np.testing.assert_array_equal(same, windows)
    with pytest.raises(ValueError, match=r"data\.augment\.gain"):
        Augmentation.from_mapping({"gain": [-1, 2]})


def test_only_training_windows_are_augmented(tmp_path):
    options = {
        "source": "synthetic",
        "cache_dir": tmp_path / "cache",
        "survey": {**SMALL, "seed": 3},
        "sampling": {"train": 300, "val": 100, "test": 100},
        "split": {"gap": 2},
        "augment": {"gain": [3.0, 4.0]},
    }
    dm = SeismicDataModule(**options)
    dm.setup("fit")
    for name, augmented in (("train", True), ("val", False), ("test", False)):
        ds = dm.datasets[name]
        idx = np.arange(len(ds))
        raw, _ = ds.raw(idx)
        served, _ = ds.__getitems__(idx)
        plain = dm.normalisation.apply(raw)
        assert np.allclose(served.numpy(), plain, atol=1e-5) != augmented, name
    with pytest.raises(ValueError, match=r"data\.augment: unknown key"):
        SeismicDataModule(augment={"gian": [1, 2]})


def _imaged(tmp_path, **acquisition) -> Survey:
    """One geology (seed 5), imaged with the given wavelet, nearly noise-free so that images compare."""
    survey = {**SMALL, "n_samples": 256, "seed": 5, "snr_db": 60.0, **acquisition}
    (folder,) = materialise_surveys("synthetic", tmp_path / "cache", survey=survey)
    return Survey.load(folder)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


@pytest.mark.parametrize(
    ("augment", "imaged_with"),
    [
        ({"wavelet_peak_hz": [20.0, 20.0]}, {"wavelet_peak_hz": 20.0}),
        ({"wavelet_peak_hz": [45.0, 45.0]}, {"wavelet_peak_hz": 45.0}),
        ({"wavelet_phase_deg": [90.0, 90.0]}, {"wavelet_phase_deg": 90.0}),
        ({"wavelet_phase_deg": [180.0, 180.0]}, {"wavelet_phase_deg": 180.0}),
    ],
)
def test_reimaged_windows_look_like_the_geology_imaged_with_that_wavelet(tmp_path, augment, imaged_with):
    nominal, other = _imaged(tmp_path), _imaged(tmp_path, **imaged_with)
    windows = np.asarray(nominal.amplitudes[10:20, :, 64:192], dtype=np.float32).reshape(-1, 1, 128)
    truth = np.asarray(other.amplitudes[10:20, :, 64:192], dtype=np.float32).reshape(-1, 1, 128)
    reimaged = Augmentation.from_mapping({**augment, "source_peak_hz": 30.0}).apply(
        windows.copy(), np.random.default_rng(0), nominal.dt_ms
    )
    core = slice(16, 112)  # the window's ends see a reflected continuation, not the survey's
    assert _correlation(reimaged[..., core], truth[..., core]) > 0.9
    # and it is a real change: the nominal image resembles the other one less
    assert _correlation(windows[..., core], truth[..., core]) < _correlation(
        reimaged[..., core], truth[..., core]
    )
    rms = np.sqrt(np.mean(reimaged[..., core] ** 2) / np.mean(truth[..., core] ** 2))
    assert 0.8 < rms < 1.25  # the Ricker ratio carries the wavelet's amplitude change too


def test_reimaging_draws_per_window_and_needs_what_it_cannot_know(tmp_path):
    windows = np.random.default_rng(1).normal(size=(64, 1, 4, 64)).astype(np.float32)  # 2D tiles
    aug = Augmentation.from_mapping({"wavelet_phase_deg": [-90, 90], "source_peak_hz": 30})
    out = aug.apply(windows.copy(), np.random.default_rng(2), 4.0)
    assert out.shape == windows.shape and out.dtype == np.float32
    changes = [_correlation(out[i], windows[i]) for i in range(64)]
    assert np.std(changes) > 0.1  # one rotation per window, not one per batch
    with pytest.raises(ValueError, match="source_peak_hz"):
        Augmentation.from_mapping({"wavelet_peak_hz": [20, 40]}).apply(
            windows.copy(), np.random.default_rng(0), 4.0
        )
    with pytest.raises(ValueError, match=r"data\.augment\.source_peak_hz: must be > 0"):
        Augmentation.from_mapping({"source_peak_hz": 0})
    with pytest.raises(ValueError, match=r"data\.augment\.source_peak_hz: re-imaging recorded data"):
        SeismicDataModule(source="segy", segy={"path": "x.sgy"}, augment={"wavelet_peak_hz": [20, 40]})
    with pytest.raises(ValueError, match="use one of the two"):
        SeismicDataModule(augment={"wavelet_peak_hz": [20, 40]}, acquisition={"wavelet_peak_hz": [20, 40]})
    dm = SeismicDataModule(survey={"wavelet_peak_hz": 25.0}, augment={"wavelet_phase_deg": [0, 90]})
    assert dm.augmentation.source_peak_hz == 25.0

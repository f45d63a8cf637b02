"""Spatial quality maps of batch scoring: a shift applied to one quadrant of a survey shows on the drift
map (its traces score apart from the rest); the uncertainty map and the time slice are arrays and PNGs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import WindowSpec, extract_windows, sample_centres
from seismic.io.segy import write_cube
from seismic.monitoring.profile import build_profile
from serving.batch import score_segy
from serving.batch_input import InputOptions
from serving.quality_maps import MapsError
from serving.runtime import load_model

from .models import CLASS_NAMES, export_tiny

N = 24  # inlines = crosslines; the shifted quadrant is [:N/2, :N/2]

# the tiny test models' normalisation (std 250) is not these surveys' scale (~1); the maps compare the
# amplitudes with the profile built on the survey itself, so they are scored as they are
AS_IS = InputOptions(max_scale_ratio=1000.0)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A tiny model whose reference profile comes from an unshifted survey, and that survey."""
    root = tmp_path_factory.mktemp("maps")
    survey = generate_survey(SyntheticSurveyConfig(n_inlines=N, n_crosslines=N, n_samples=192, seed=3))
    folder = export_tiny(root / "model", "cnn1d")
    model = load_model(folder, ["CPUExecutionProvider"])
    spec = WindowSpec(length=64)
    il, xl, t = sample_centres(survey.labels, 3000, spec, balance=False, seed=0)
    raw = extract_windows(survey.amplitudes, il, xl, t, spec)
    out = model.run(model.normalise(raw))
    build_profile(raw, survey.labels[il, xl, t], out["probabilities"], out["embedding"], dt_ms=survey.dt_ms,
                  class_names=CLASS_NAMES, max_embeddings=500, survey=np.zeros(len(il), np.int64),
                  inline=il).save(folder)  # fmt: skip
    return load_model(folder, ["CPUExecutionProvider"]), survey, root


def noise(cube: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cube + rng.normal(0, cube.std(), cube.shape).astype(np.float32)


def gain(cube: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return cube * 1.5


# a 90-degree phase rotation of one quadrant does NOT separate on this survey (measured: tiles 1.64 vs
# 1.37 +- 0.25 elsewhere; README, "Where not to trust the model"): not tested as if it did
@pytest.mark.parametrize("shift", [noise, gain], ids=["noise", "gain_x1.5"])
def test_a_shifted_quadrant_stands_out_on_the_drift_map(case, tmp_path, shift):
    model, survey, _ = case
    cube = survey.amplitudes.copy()
    q = N // 2
    cube[:q, :q] = shift(cube[:q, :q], np.random.default_rng(0))
    path = write_cube(tmp_path / "in.sgy", cube, survey.dt_ms, inlines=np.arange(500, 500 + N))
    maps = tmp_path / "maps"
    score_segy(model, path, tmp_path / "c.sgy", chunk_inlines=5, progress=False, maps_dir=maps, options=AS_IS,
               maps_options={"windows_per_trace": 4, "block": 4, "time_slice": 100})  # fmt: skip

    drift = np.load(maps / "drift.npy")
    inside = np.zeros((N, N), bool)
    inside[:q, :q] = True
    shifted, rest = drift[inside], drift[~inside]
    assert np.isfinite(drift).all()
    assert shifted.mean() > rest.mean() + 3 * rest.std(), (shifted.mean(), rest.mean(), rest.std())
    assert np.mean(shifted > np.percentile(rest, 95)) > 0.9  # the region, tile by tile, not just on average
    assert 0.5 < np.median(rest) < 1.5  # unshifted traces score like the reference

    info = json.loads((maps / "maps.json").read_text())
    assert info["inlines"][0] == 500 and info["shape"] == [N, N]
    for name in ("uncertainty", "drift", "slice_t100"):
        assert (maps / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
        assert np.load(maps / f"{name}.npy").shape == (N, N)
    uncertainty = np.load(maps / "uncertainty.npy")
    assert np.all((uncertainty >= 0) & (uncertainty < 1))


def test_maps_need_a_profile_and_sane_options(case, tmp_path, model_dirs):
    model, survey, _ = case
    path = write_cube(tmp_path / "in.sgy", survey.amplitudes, survey.dt_ms)
    with pytest.raises(MapsError, match="time_slice 999 is outside"):
        score_segy(model, path, tmp_path / "c.sgy", progress=False, maps_dir=tmp_path / "m", options=AS_IS,
                   maps_options={"time_slice": 999})  # fmt: skip
    bare = load_model(model_dirs["cnn1d"], ["CPUExecutionProvider"])  # exported without a profile
    with pytest.raises(MapsError, match="reference profile"):
        score_segy(bare, path, tmp_path / "c.sgy", progress=False, maps_dir=tmp_path / "m", options=AS_IS)
    assert not (tmp_path / "c.sgy").exists()  # refused before anything was written

"""Batch scoring with segmentation models: blended tiles per inline, chunk-independent, same outputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from seismic.export.onnx import stamp
from seismic.io.segy import open_segy, write_cube
from serving.batch import BatchScoringError, iter_scores, score_segy
from serving.inference_log import InferenceLogWriter, read_inference_log
from serving.runtime import InputError, load_model

from .models import export_tiny

SHAPE = (7, 9, 40)  # 9 crosslines: an 8-trace tile has to overlap; 40 samples: three 16-sample tiles


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense_models")
    one = export_tiny(root / "unet1d", "unet1d", length=16)
    two = export_tiny(root / "unet2d", "unet2d", length=16, traces=8)
    cross = Path(shutil.copytree(two, root / "unet2d_crossline"))
    stamp(cross, window={"length": 16, "width": 8, "axis": "crossline", "pad_mode": "reflect"})
    cpu = ["CPUExecutionProvider"]
    return {p.name: load_model(p, providers=cpu, intra_op_threads=1) for p in (one, two, cross)}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    amplitudes = (np.random.default_rng(5).normal(size=SHAPE) * 250).astype(np.float32)
    path = tmp_path_factory.mktemp("dense_volume") / "cube.sgy"
    write_cube(path, amplitudes, 4.0, inlines=np.arange(11, 18), crosslines=np.arange(1, 10))
    return path, amplitudes


def scored(model, amplitudes, chunk, overlap=None, batch_size=1024):
    parts = list(iter_scores(model, amplitudes, chunk_inlines=chunk, batch_size=batch_size, overlap=overlap))
    assert [s for s, _, _ in parts] == list(range(0, SHAPE[0], chunk))
    return np.concatenate([c for _, c, _ in parts]), np.concatenate([p for _, _, p in parts])


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
@pytest.mark.parametrize("name", ["unet1d", "unet2d"])
def test_chunked_scoring_equals_whole_volume(models, volume, name, overlap):
    model, (_, amplitudes) = models[name], volume
    want_classes, want_prob = scored(model, amplitudes, SHAPE[0], overlap)
    assert want_classes.shape == SHAPE and want_prob.min() > 1.0 / len(model.class_names) - 1e-6
    for chunk, batch in ((1, 1024), (2, 3), (3, 1)):  # also other tile batches per onnxruntime call
        classes, prob = scored(model, amplitudes, chunk, overlap, batch)
        np.testing.assert_allclose(prob, want_prob, atol=1e-5, err_msg=f"chunk {chunk}")
        assert (classes != want_classes).mean() < 1e-3, f"chunk {chunk}"


def test_blending_is_not_a_single_tile(models, volume):
    """Overlap changes the answer where tiles meet (it is used), and a tile-sized cube is one tile."""
    model, (_, amplitudes) = models["unet2d"], volume
    _, none = scored(model, amplitudes, 7, overlap=0.0)
    _, half = scored(model, amplitudes, 7, overlap=0.5)
    assert np.abs(none - half).max() > 1e-4
    tile = np.ascontiguousarray(amplitudes[:1, :8, :16])
    direct = model.predict(tile[:, None])["probabilities"].max(axis=1)
    got = scored_one(model, tile)
    assert got.shape == (1, 8, 16)
    np.testing.assert_allclose(got, direct, atol=1e-6)


def scored_one(model, cube):
    return np.concatenate([p for _, _, p in iter_scores(model, cube, chunk_inlines=1)])


def test_segy_outputs_summary_and_one_log_row_per_tile(models, volume, tmp_path):
    (path, amplitudes), model = volume, models["unet2d"]
    out = tmp_path / "out"
    with InferenceLogWriter(tmp_path / "log", dt_ms=4.0, sample_fraction=1.0, seed=0) as writer:
        result = score_segy(
            model,
            path,
            out / "classes.sgy",
            probability_path=out / "maxprob.sgy",
            summary_path=out / "summary.parquet",
            chunk_inlines=3,
            progress=False,
            log_writer=writer,
        )
    want, want_prob = scored(model, amplitudes, 2)
    assert result.windows == amplitudes.size
    with open_segy(out / "classes.sgy") as classes, open_segy(out / "maxprob.sgy") as prob:
        assert (classes.read_all() != want).mean() < 1e-3
        np.testing.assert_allclose(prob.read_all(), want_prob, atol=1e-5)
    summary = pq.read_table(out / "summary.parquet")
    assert summary.column("inline").to_pylist() == list(range(11, 18))
    counts = sum(summary.column(f"count_{name}").to_numpy() for name in model.class_names)
    np.testing.assert_array_equal(counts, np.full(SHAPE[0], SHAPE[1] * SHAPE[2]))
    table = read_inference_log(tmp_path / "log")
    # per inline: 2 tile positions across 9 crosslines x 3 along 40 samples
    assert table.num_rows == writer.stats.rows_written == SHAPE[0] * 2 * 3
    probabilities = np.stack(table.column("probabilities").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    shares = np.stack(table.column("class_shares").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(shares.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(table.column("predicted_class").to_numpy(), shares.argmax(axis=1))
    mean_max = table.column("mean_max_probability").to_numpy()
    # a sample's winning probability is at least its mean probability of any class
    assert (mean_max >= probabilities.max(axis=1) - 1e-6).all() and (mean_max <= 1 + 1e-6).all()


@pytest.mark.parametrize(("name", "passes"), [("unet2d_crossline", None), ("unet2d", "both")])
def test_crossline_sections_are_chunk_independent_too(models, name, passes):
    """Crossline tiles span inlines: a chunk reads the halo its global-grid tiles need."""
    model = models[name]
    # 20 inlines: 8-inline tiles on a grid that no chunk boundary below lines up with
    amplitudes = (np.random.default_rng(9).normal(size=(20, 9, 40)) * 250).astype(np.float32)
    whole = next(iter_scores(model, amplitudes, chunk_inlines=20, passes=passes))
    for chunk in (1, 3, 7):
        parts = list(iter_scores(model, amplitudes, chunk_inlines=chunk, batch_size=5, passes=passes))
        prob = np.concatenate([p for _, _, p in parts])
        np.testing.assert_allclose(prob, whole[2], atol=1e-5, err_msg=f"chunk {chunk}")
    if passes == "both":  # the average of the two single passes
        inline = next(iter_scores(model, amplitudes, chunk_inlines=20, passes="inline"))
        cross = next(iter_scores(model, amplitudes, chunk_inlines=20, passes="crossline"))
        assert np.abs(inline[2] - cross[2]).max() > 1e-4  # the passes differ, so averaging means something
        assert (whole[2] <= np.maximum(inline[2], cross[2]) + 1e-5).all()


def test_unknown_passes_are_refused(models, volume, tmp_path):
    path, _ = volume
    with pytest.raises(BatchScoringError, match=r"chunk\.passes must be one of"):
        score_segy(models["unet2d"], path, tmp_path / "c.sgy", progress=False, passes="diagonal")
    assert not (tmp_path / "c.sgy").exists()


def test_served_tiles_may_take_any_multiple_of_the_size_multiple(models):
    model = models["unet2d"]
    assert model.dense and model.size_multiple == 4
    out = model.predict(np.zeros((2, 12, 24), dtype=np.float32))
    assert out["probabilities"].shape == (2, 6, 12, 24) and out["class"].shape == (2, 12, 24)
    with pytest.raises(InputError) as info:
        model.predict(np.zeros((2, 10, 24), dtype=np.float32))
    assert "multiple of 4" in info.value.expected


def test_centre_outputs_read_the_centre_sample_of_each_tile(models):
    from seismic.export.onnx import centre_outputs, run_session, session

    model = models["unet2d"]
    tiles = model.normalise(np.random.default_rng(0).normal(0, 250, (5, 1, 8, 16)).astype(np.float32))
    sess = session(model.folder / "model.onnx")
    full, centre = run_session(sess, tiles), centre_outputs(sess, tiles, batch=2)
    np.testing.assert_allclose(centre["probabilities"], full["probabilities"][:, :, 4, 8], atol=1e-6)
    np.testing.assert_allclose(centre["embedding"], full["embedding"], atol=1e-6)


def test_a_cube_smaller_than_a_tile_is_padded_up_to_half_a_tile(models, tmp_path):
    model = models["unet2d"]  # tiles of 8 traces x 16 samples
    small = (np.random.default_rng(1).normal(size=(2, 5, 12)) * 250).astype(np.float32)
    write_cube(tmp_path / "small.sgy", small, 4.0)
    result = score_segy(model, tmp_path / "small.sgy", tmp_path / "small.classes.sgy", progress=False)
    assert result.windows == small.size
    write_cube(tmp_path / "thin.sgy", small[:, :3], 4.0)
    with pytest.raises(ValueError, match="3 traces along the inline axis"):
        score_segy(model, tmp_path / "thin.sgy", tmp_path / "thin.classes.sgy", progress=False)

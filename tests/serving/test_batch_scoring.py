from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import segyio

from seismic.data.windows import WindowSpec, extract_windows
from seismic.export.onnx import stamp
from seismic.io.errors import SeismicIOError
from seismic.io.segy import open_segy, write_cube
from serving.batch import FILL_CLASS, BatchScoringError, iter_scores, score_segy
from serving.batch_input import InputOptions
from serving.inference_log import InferenceLogWriter, read_inference_log
from serving.runtime import load_model

from .models import export_tiny

REPO = Path(__file__).resolve().parents[2]
SHAPE = (7, 9, 40)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny untrained exports: trace windows, inline patches, and the same graph cutting crossline patches."""
    root = tmp_path_factory.mktemp("models")
    one = export_tiny(root / "cnn1d", "cnn1d", length=16)
    two = export_tiny(root / "cnn2d", "cnn2d", length=16, traces=5)
    cross = Path(shutil.copytree(two, root / "cnn2d_crossline"))
    stamp(cross, window={"length": 16, "width": 5, "axis": "crossline", "pad_mode": "reflect"})
    folders = [one, two, cross]
    for axis in ("inline", "crossline"):
        folders.append(Path(shutil.copytree(two, root / f"cnn2d_valid_{axis}")))
        stamp(folders[-1], window={"length": 16, "width": 5, "axis": axis, "pad_mode": "valid"})
    cpu = ["CPUExecutionProvider"]
    return {p.name: load_model(p, providers=cpu, intra_op_threads=1) for p in folders}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """A small cube with non-default line numbers, as SEG-Y; returns (path, amplitudes)."""
    amplitudes = (np.random.default_rng(3).normal(size=SHAPE) * 250).astype(np.float32)
    path = tmp_path_factory.mktemp("volume") / "cube.sgy"
    write_cube(path, amplitudes, 4.0, inlines=np.arange(101, 108), crosslines=np.arange(20, 38, 2))
    return path, amplitudes


def whole_volume(model, amplitudes):
    """The reference: every centre's window cut from the whole array at once, one predict call."""
    spec = WindowSpec.from_mapping(model.metadata["window"])
    il, xl, t = (a.ravel() for a in np.indices(amplitudes.shape))
    out = model.predict(extract_windows(amplitudes, il, xl, t, spec))
    return out["class"].reshape(amplitudes.shape), out["probabilities"].max(axis=1).reshape(amplitudes.shape)


@pytest.mark.parametrize("name", ["cnn1d", "cnn2d", "cnn2d_crossline"])
def test_chunked_scoring_equals_whole_volume(models, volume, name):
    model, (_, amplitudes) = models[name], volume
    want, _ = whole_volume(model, amplitudes)
    for chunk in (1, 2, 3, 7):  # 1 inline: a crossline patch reads 2 neighbours on each side
        got = np.concatenate(
            [c for _, c, _ in iter_scores(model, amplitudes, chunk_inlines=chunk, batch_size=61)]
        )
        np.testing.assert_array_equal(got, want, err_msg=f"chunk of {chunk} inlines")


@pytest.mark.parametrize("axis", ["inline", "crossline"])
def test_valid_padding_leaves_unscored_edges(models, volume, axis):
    model, (_, amplitudes) = models[f"cnn2d_valid_{axis}"], volume
    got = np.concatenate([c for _, c, _ in iter_scores(model, amplitudes, chunk_inlines=1)])
    lateral = slice(2, -2)  # a 5-trace patch fits from the third trace to the third last
    inner = (slice(None), lateral, slice(8, -7)) if axis == "inline" else (lateral, slice(None), slice(8, -7))
    assert (got != FILL_CLASS).sum() == got[inner].size and (got[inner] != FILL_CLASS).all()
    il, xl, t = (a[inner].ravel() for a in np.indices(amplitudes.shape))
    spec = WindowSpec.from_mapping(model.metadata["window"])
    want = model.predict(extract_windows(amplitudes, il, xl, t, spec))["class"]
    np.testing.assert_array_equal(got[inner].ravel(), want)


def test_segy_end_to_end_keeps_geometry_and_headers(models, volume, tmp_path):
    (path, amplitudes), model = volume, models["cnn2d"]
    out = tmp_path / "out"
    result = score_segy(
        model,
        path,
        out / "classes.sgy",
        probability_path=out / "maxprob.sgy",
        summary_path=out / "summary.parquet",
        chunk_inlines=3,
        batch_size=100,
        class_format="int8",
        progress=False,
    )
    want, want_prob = whole_volume(model, amplitudes)
    assert result.windows == amplitudes.size and sum(result.class_counts.values()) == amplitudes.size
    with (
        open_segy(path) as src,
        open_segy(out / "classes.sgy") as classes,
        open_segy(out / "maxprob.sgy") as prob,
    ):
        for f in (classes, prob):
            assert f.shape == src.shape and f.dt_ms == src.dt_ms and f.sorting == src.sorting
            np.testing.assert_array_equal(f.inlines, src.inlines)
            np.testing.assert_array_equal(f.crosslines, src.crosslines)
            assert f.text_header == src.text_header
        assert classes.format_name == "int8" and prob.format_name == "ieee"
        np.testing.assert_array_equal(classes.read_all(), want)
        np.testing.assert_allclose(prob.read_all(), want_prob, rtol=1e-6)
    with (
        segyio.open(path, ignore_geometry=True) as a,
        segyio.open(out / "classes.sgy", ignore_geometry=True) as b,
    ):
        assert all(
            a.header[i] == b.header[i] for i in range(a.tracecount)
        )  # every trace header, byte for byte
    summary = pq.read_table(out / "summary.parquet")
    assert summary.column("inline").to_pylist() == list(range(101, 108))
    counts = sum(summary.column(f"count_{name}").to_numpy() for name in model.class_names)
    np.testing.assert_array_equal(counts, np.full(SHAPE[0], SHAPE[1] * SHAPE[2]))
    assert b"seismic.batch_scoring" in summary.schema.metadata


def test_corrupt_input_fails_before_any_output(models, volume, tmp_path):
    path, _ = volume
    broken = tmp_path / "broken.sgy"
    broken.write_bytes(path.read_bytes()[:-1000])  # cut short, as by an interrupted copy
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(SeismicIOError, match="truncated"):
        score_segy(
            models["cnn1d"], broken, out / "classes.sgy", summary_path=out / "s.parquet", progress=False
        )
    assert list(out.iterdir()) == []


def test_nan_midway_leaves_no_output(models, volume, tmp_path):
    _, amplitudes = volume
    bad = amplitudes.copy()
    bad[5, 3, 10] = np.nan
    path = tmp_path / "nan.sgy"
    write_cube(path, bad, 4.0)
    out = tmp_path / "out"
    with pytest.raises(BatchScoringError, match="inline position 5 holds NaN"):
        score_segy(
            models["cnn1d"], path, out / "classes.sgy", probability_path=out / "p.sgy", chunk_inlines=2
        )
    assert list(out.iterdir()) == []  # the first chunks were written to temporary files, now gone


def test_batch_rows_reach_the_inference_log(models, volume, tmp_path):
    path, _ = volume
    with InferenceLogWriter(tmp_path / "log", dt_ms=4.0, sample_fraction=0.05, seed=0) as writer:
        score_segy(models["cnn1d"], path, tmp_path / "c.sgy", log_writer=writer, progress=False)
    table = read_inference_log(tmp_path / "log")
    assert 0 < table.num_rows == writer.stats.rows_written < np.prod(SHAPE) // 5
    assert all(r.startswith("batch-") for r in table.column("request_id").to_pylist())


@pytest.mark.shared_data
def test_f3_is_scored_on_its_own_grid(models, shared_segy_dir, tmp_path):
    f3 = shared_segy_dir / "f3.sgy"
    if not f3.is_file():
        pytest.skip(f"{f3} not found (see ../shared/data/segy/README.md)")
    model = models["cnn2d"]
    # f3 is 8.6x the tiny model's scale (refused by default: test_batch_input.py); the grid is checked here
    wide = InputOptions(max_scale_ratio=10.0)
    result = score_segy(model, f3, tmp_path / "f3_classes.sgy", chunk_inlines=5, options=wide, progress=False)
    with open_segy(f3) as src, open_segy(tmp_path / "f3_classes.sgy") as out:
        assert out.shape == src.shape == (23, 18, 75) and out.dt_ms == src.dt_ms
        np.testing.assert_array_equal(out.inlines, src.inlines)
        np.testing.assert_array_equal(out.crosslines, src.crosslines)
        for field in ("cdp_x", "cdp_y", "coord_scalar"):
            np.testing.assert_array_equal(
                out.trace_headers(fields=(field,))[field], src.trace_headers(fields=(field,))[field]
            )
        want, _ = whole_volume(model, src.read_all())
        np.testing.assert_array_equal(out.read_all(), want)
    assert result.windows == 23 * 18 * 75


def test_predict_cli(models, volume, tmp_path):
    path, _ = volume
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "predict.py"),
            f"model.source={models['cnn1d'].folder}",
            f"input={path}",
            f"output.classes={out / 'classes.sgy'}",
            f"output.summary={out / 'summary.parquet'}",
            "runtime.providers=[CPUExecutionProvider]",
            "runtime.intra_op_threads=1",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "windows/s" in proc.stdout
    with open_segy(out / "classes.sgy") as f:
        assert f.shape == SHAPE

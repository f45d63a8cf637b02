"""Batch scoring of real-world inputs (serving.batch_input): amplitude scale, sample interval, trace length
and 2D lines, on SEG-Y files written here with segyio and tiny exported models (mean 3, std 250, 4 ms)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import segyio

from seismic.data.windows import WindowSpec, extract_windows
from seismic.export.onnx import stamp
from seismic.io.segy import open_segy, write_cube
from serving.batch import score_segy
from serving.batch_input import BatchInputError, InputOptions
from serving.predict_settings import load_predict_settings
from serving.runtime import load_model

from .models import NORMALISATION, export_tiny

REPO = Path(__file__).resolve().parents[2]
SHAPE = (5, 8, 40)
MEAN, STD = NORMALISATION["mean"], NORMALISATION["std"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    one = export_tiny(root / "cnn1d", "cnn1d", length=16)
    two = export_tiny(root / "cnn2d", "cnn2d", length=16, traces=5)
    cross = Path(shutil.copytree(two, root / "cnn2d_crossline"))
    stamp(cross, window={"length": 16, "width": 5, "axis": "crossline", "pad_mode": "reflect"})
    cpu = ["CPUExecutionProvider"]
    return {p.name: load_model(p, providers=cpu, intra_op_threads=1) for p in (one, two, cross)}


def reference(model, amplitudes):
    """Classes of every centre of ``amplitudes [il, xl, t]``, cut from the whole array, one predict call."""
    spec = WindowSpec.from_mapping(model.metadata["window"])
    il, xl, t = (a.ravel() for a in np.indices(amplitudes.shape))
    return model.predict(extract_windows(amplitudes, il, xl, t, spec))["class"].reshape(amplitudes.shape)


def on_model_scale(x, mean, std):
    return ((x.astype(np.float64) - mean) / std * STD + MEAN).astype(np.float32)


def write_line(path, traces, dt_ms=4.0, offsets=None, cdp=None):
    """An unstructured SEG-Y (no inline/crossline words), as a 2D line or gathers from a processing tool."""
    spec = segyio.spec()
    spec.format, spec.samples, spec.tracecount = 5, list(range(traces.shape[1])), len(traces)
    with segyio.create(path, spec) as f:
        f.bin.update(hdt=int(dt_ms * 1000), hns=traces.shape[1])
        for i, trace in enumerate(traces):
            f.header[i] = {
                segyio.TraceField.CDP: int(i + 1 if cdp is None else cdp[i]),
                segyio.TraceField.offset: int(0 if offsets is None else offsets[i]),
                segyio.TraceField.TRACE_SAMPLE_INTERVAL: int(dt_ms * 1000),
                segyio.TraceField.TRACE_SAMPLE_COUNT: traces.shape[1],
            }
            f.trace[i] = trace
    return path


def test_a_cube_at_2000x_the_model_scale_is_refused_by_the_cli_then_rescaled(models, tmp_path):
    amplitudes = np.random.default_rng(0).normal(MEAN, STD, SHAPE).astype(np.float32)
    loud = write_cube(tmp_path / "loud.sgy", amplitudes * 2000, 4.0)
    out = tmp_path / "out"
    cli = [sys.executable, str(REPO / "scripts" / "predict.py"), f"model.source={models['cnn1d'].folder}",
           f"input={loud}", f"output.classes={out / 'c.sgy'}", "runtime.providers=[CPUExecutionProvider]",
           "progress=false", f"hydra.run.dir={tmp_path / 'hydra'}"]  # fmt: skip
    proc = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    ratio = re.search(r"amplitudes are ([\d,]+)x the model's normalisation", line)
    assert line.startswith(f"predict failed: {loud}: ") and 1900 < int(ratio[1].replace(",", "")) < 2100
    assert "normalisation=per_volume" in line and not out.exists()
    proc = subprocess.run([*cli, "normalisation=per_volume"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(proc.stdout[proc.stdout.index("{") :])["input_plan"]
    assert plan["normalisation"] == "per_volume" and 1900 < plan["scale_ratio"] < 2100
    assert any("rescaled per_volume" in note for note in plan["notes"])
    with open_segy(out / "c.sgy") as f:
        got = f.read_all()
    loud_read = amplitudes * np.float32(2000)
    want = reference(models["cnn1d"], on_model_scale(loud_read, plan["volume_mean"], plan["volume_std"]))
    np.testing.assert_array_equal(got, want)


def test_per_trace_normalisation_undoes_a_gain_varying_along_the_section(models, tmp_path):
    rng = np.random.default_rng(1)
    amplitudes = rng.normal(0, 1, SHAPE).astype(np.float32)
    gain = 10.0 ** rng.integers(-2, 4, SHAPE[:2])[..., None]  # 0.01x to 1000x from trace to trace
    path = write_cube(tmp_path / "gain.sgy", (amplitudes * gain).astype(np.float32), 4.0)
    result = score_segy(
        models["cnn2d"], path, tmp_path / "c.sgy", options=InputOptions("per_trace"), progress=False
    )
    assert result.input_plan["normalisation"] == "per_trace"
    with open_segy(path) as src, open_segy(tmp_path / "c.sgy") as out:
        x = src.read_all().astype(np.float64)
        z = (x - x.mean(axis=-1, keepdims=True)) / x.std(axis=-1, keepdims=True)
        assert (out.read_all() == reference(models["cnn2d"], on_model_scale(z, 0.0, 1.0))).mean() > 0.999


def test_traces_shorter_than_the_window_are_refused_before_any_output(models, tmp_path):
    path = write_cube(
        tmp_path / "short.sgy", np.random.default_rng(5).normal(MEAN, STD, (3, 4, 10)).astype(np.float32), 4.0
    )
    out = tmp_path / "out"
    with pytest.raises(BatchInputError, match=r"short.sgy: traces of 10 samples .* window of 16 samples"):
        score_segy(models["cnn1d"], path, out / "c.sgy", progress=False)
    assert not out.exists()


def test_another_sample_interval_is_refused_then_resampled_to_the_model(models, tmp_path):
    amplitudes = np.random.default_rng(2).normal(MEAN, STD, (3, 4, 80)).astype(np.float32)
    path = write_cube(tmp_path / "2ms.sgy", amplitudes, 2.0)
    with pytest.raises(
        BatchInputError, match=r"2ms.sgy: sample interval 2 ms, the model .* 4 ms.*resample=true"
    ):
        score_segy(models["cnn1d"], path, tmp_path / "c.sgy", progress=False)
    result = score_segy(
        models["cnn1d"], path, tmp_path / "c.sgy", options=InputOptions(resample=True), progress=False
    )
    assert result.input_plan["resampled"] and result.shape == (3, 4, 80)
    with open_segy(tmp_path / "c.sgy") as out:
        assert out.dt_ms == 2.0
        got = out.read_all()
    at_4ms = scipy.signal.resample_poly(amplitudes.astype(np.float64), 1, 2, axis=-1).astype(np.float32)
    want = reference(models["cnn1d"], at_4ms)[..., np.rint(np.arange(80) / 2).clip(max=39).astype(int)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("name", ["cnn1d", "cnn2d", "cnn2d_crossline"])
def test_a_2d_line_is_scored_as_one_section(models, tmp_path, name):
    traces = np.random.default_rng(3).normal(MEAN, STD, (30, 40)).astype(np.float32)
    path = write_line(tmp_path / "line.sgy", traces)
    result = score_segy(
        models[name], path, tmp_path / "c.sgy", summary_path=tmp_path / "s.pq", progress=False
    )
    assert result.input_plan["layout"] == "2d-section" and result.windows == traces.size
    along = traces[:, None] if name == "cnn2d_crossline" else traces[None]  # a patch spans the line's traces
    with open_segy(tmp_path / "c.sgy") as out:
        assert out.kind == "unstructured" and out.dt_ms == 4.0
        np.testing.assert_array_equal(out.read_all(), reference(models[name], along).reshape(traces.shape))
    with (
        segyio.open(path, ignore_geometry=True) as a,
        segyio.open(tmp_path / "c.sgy", ignore_geometry=True) as b,
    ):
        assert all(a.header[i] == b.header[i] for i in range(a.tracecount))


def test_gathers_and_a_cube_at_other_header_bytes_are_refused(models, tmp_path):
    traces = np.random.default_rng(4).normal(MEAN, STD, (24, 40)).astype(np.float32)
    gathers = write_line(tmp_path / "gathers.sgy", traces, offsets=np.tile([100, 200, 300], 8))
    with pytest.raises(BatchInputError, match=r"gathers.sgy: .* offsets vary \(100 to 300\): pre-stack"):
        score_segy(models["cnn1d"], gathers, tmp_path / "c.sgy", progress=False)
    cdp = write_line(tmp_path / "cdp.sgy", traces, cdp=np.repeat(np.arange(1, 9), 3))
    with pytest.raises(BatchInputError, match=r"CDP numbers .* repeat"):
        score_segy(models["cnn1d"], cdp, tmp_path / "c.sgy", progress=False)
    cube = write_cube(tmp_path / "cube.sgy", traces.reshape(4, 6, 40), 4.0, iline=9, xline=21)
    with pytest.raises(BatchInputError, match=r"bytes 9/21 hold a 4 x 6 grid: .* segy.iline=9 segy.xline=21"):
        score_segy(models["cnn1d"], cube, tmp_path / "c.sgy", progress=False)
    assert list(tmp_path.glob("c.*")) == []


@pytest.mark.shared_data
def test_the_real_f3_crop_is_refused_at_its_scale_and_scored_per_volume(models, shared_segy_dir, tmp_path):
    f3 = shared_segy_dir / "f3.sgy"
    if not f3.is_file():
        pytest.skip(f"{f3} not found (see ../shared/data/segy/README.md)")
    with pytest.raises(BatchInputError, match=r"f3.sgy: amplitudes are 8.64x the model's normalisation"):
        score_segy(models["cnn2d"], f3, tmp_path / "c.sgy", progress=False)
    result = score_segy(
        models["cnn2d"],
        f3,
        tmp_path / "c.sgy",
        chunk_inlines=5,
        options=InputOptions("per_volume"),
        progress=False,
    )
    plan = result.input_plan
    with open_segy(f3) as src, open_segy(tmp_path / "c.sgy") as out:
        want = reference(
            models["cnn2d"], on_model_scale(src.read_all(), plan["volume_mean"], plan["volume_std"])
        )
        np.testing.assert_array_equal(out.read_all(), want)


def test_rescaling_and_resampling_need_the_local_engine():
    base = {"model": {"source": "m"}, "input": "x.sgy", "engine": "ray"}
    with pytest.raises(ValueError, match="normalisation=per_trace and resample=false need engine=local"):
        load_predict_settings({**base, "normalisation": "per_trace"})
    with pytest.raises(ValueError, match="max_scale_ratio"):
        load_predict_settings({**base, "max_scale_ratio": 0.5})
    assert json.loads(load_predict_settings(base).model_dump_json())["normalisation"] == "model"

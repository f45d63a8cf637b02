"""Batch scoring on Ray (serving/ray_batch.py) against a local 2-CPU Ray instance: the same files as the
single-machine path. Skipped when Ray (the optional extra ``.[ray]``) is not installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from seismic.export.onnx import stamp
from seismic.io.segy import write_cube
from serving.batch import BatchScoringError, score_segy
from serving.predict_settings import load_predict_settings
from serving.runtime import load_model

from .models import export_tiny

REPO = Path(__file__).resolve().parents[2]
SHAPE = (7, 9, 40)
# Ray binds its servers to the node's routable address on Linux; with "clusters" disabled the node address is
# the loopback one, so the test instance listens on 127.0.0.1 only
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# Ray Data warns about its own deprecated context fields whenever a context is created
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*"), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")
    pytest.importorskip("ray.data", reason="Ray Data is missing: pip install 'ray[data]'")
    saved = {k: os.environ.get(k) for k in LOOPBACK}
    os.environ.update(LOOPBACK)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        yield ray
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Trace windows, and 5-trace crossline patches whose windows reach 2 inlines into neighbouring chunks."""
    root = tmp_path_factory.mktemp("models")
    one = export_tiny(root / "cnn1d", "cnn1d", length=16)
    cross = export_tiny(root / "cnn2d_crossline", "cnn2d", length=16, traces=5)
    stamp(cross, window={"length": 16, "width": 5, "axis": "crossline", "pad_mode": "reflect"})
    # a segmentation net whose crossline tiles (8 traces of 7 inlines: padded, on the global grid) span chunks
    dense = export_tiny(root / "unet2d_crossline", "unet2d", length=16, traces=8)
    stamp(dense, window={"length": 16, "width": 8, "axis": "crossline", "pad_mode": "reflect"})
    return {p.name: p for p in (one, cross, dense)}


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    amplitudes = (np.random.default_rng(3).normal(size=SHAPE) * 250).astype(np.float32)
    path = tmp_path_factory.mktemp("volume") / "cube.sgy"
    write_cube(path, amplitudes, 4.0, inlines=np.arange(101, 108), crosslines=np.arange(20, 38, 2))
    return path


def local_outputs(folder: Path, cube: Path, out: Path) -> Path:
    model = load_model(folder, ["CPUExecutionProvider"], intra_op_threads=1)
    score_segy(
        model,
        cube,
        out / "classes.sgy",
        probability_path=out / "maxprob.sgy",
        summary_path=out / "summary.parquet",
        chunk_inlines=3,
        progress=False,
    )
    return out


def ray_outputs(folder: Path, cube: Path, out: Path, **options):
    """``score_segy_ray`` on the CPU with the same output names as :func:`local_outputs`."""
    from serving.ray_batch import score_segy_ray

    return score_segy_ray(
        folder,
        cube,
        out / "classes.sgy",
        probability_path=out / "maxprob.sgy",
        summary_path=out / "summary.parquet",
        providers=["CPUExecutionProvider"],
        progress=False,
        **options,
    )


def assert_same_outputs(got: Path, want: Path) -> None:
    for name in ("classes.sgy", "maxprob.sgy"):  # headers, geometry and every sample, byte for byte
        assert (got / name).read_bytes() == (want / name).read_bytes(), name
    a, b = pq.read_table(got / "summary.parquet"), pq.read_table(want / "summary.parquet")
    assert a.column_names == b.column_names
    for column in a.column_names:
        np.testing.assert_allclose(a.column(column).to_numpy(), b.column(column).to_numpy(), rtol=1e-12)


# the crossline model is the case that can go wrong (its windows read inlines of neighbouring chunks); the
# trace-window model only adds time to the default run
@pytest.mark.parametrize("name", ["cnn2d_crossline", pytest.param("cnn1d", marks=pytest.mark.slow)])
def test_ray_engine_writes_what_the_single_machine_path_writes(ray_session, models, volume, tmp_path, name):
    want = local_outputs(models[name], volume, tmp_path / "local")
    got = tmp_path / "ray"
    # 4 chunks over 2 actors, cut differently from the local run's 3 inlines
    result = ray_outputs(models[name], volume, got, chunk_inlines=2, batch_size=50, actors=2)
    assert_same_outputs(got, want)
    assert result.windows == int(np.prod(SHAPE)) and result.chunk_inlines == 2
    assert result.provider == "CPUExecutionProvider"


def test_ray_engine_blends_a_segmentation_net_as_the_single_machine_path(
    ray_session, models, volume, tmp_path
):
    from seismic.io.segy import open_segy

    want = local_outputs(models["unet2d_crossline"], volume, tmp_path / "local")
    got = tmp_path / "ray"
    result = ray_outputs(models["unet2d_crossline"], volume, got, chunk_inlines=2, actors=2)
    assert result.windows == int(np.prod(SHAPE))
    # other chunks batch the tiles otherwise: onnxruntime's sums may differ in the last bits (~1e-6)
    with open_segy(got / "classes.sgy") as a, open_segy(want / "classes.sgy") as b:
        assert (a.read_all() != b.read_all()).mean() < 1e-3
    with open_segy(got / "maxprob.sgy") as a, open_segy(want / "maxprob.sgy") as b:
        np.testing.assert_allclose(a.read_all(), b.read_all(), atol=1e-5)


def test_a_bad_chunk_fails_with_the_actors_error_and_writes_nothing(ray_session, models, tmp_path):
    bad = (np.random.default_rng(4).normal(size=SHAPE) * 250).astype(np.float32)
    bad[5, 3, 10] = np.nan
    cube = tmp_path / "nan.sgy"
    write_cube(cube, bad, 4.0)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BatchScoringError, match="inline position 5 holds NaN"):
        ray_outputs(models["cnn1d"], cube, out, chunk_inlines=2)
    assert list(out.iterdir()) == []  # the chunks that did finish went to temporary files, now gone


def test_actors_without_gpus_only_try_providers_that_need_no_device():
    from serving.ray_batch import actor_providers

    both = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert actor_providers(both, num_gpus=0) == ["CPUExecutionProvider"]
    assert actor_providers(both, num_gpus=0.5) == both
    assert actor_providers(["CUDAExecutionProvider"], num_gpus=0) == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"engine": "rya"}, r"engine\n  Input should be 'local' or 'ray'"),
        ({"ray": {"actor": 2}}, r"ray\.actor\n  Extra inputs are not permitted"),
        ({"ray": {"actors": 0}}, r"ray\.actors\n  Input should be greater than or equal to 1"),
        ({"engine": "ray", "log": {"enabled": True}}, "log.enabled=true needs engine=local"),
        (
            {"engine": "ray", "ray": {"num_gpus": 1}, "runtime": {"providers": ["CPUExecutionProvider"]}},
            "ray.num_gpus=1.0 reserves GPUs, but runtime.providers",
        ),
    ],
)
def test_predict_settings_name_the_bad_key(override, message):
    with pytest.raises(ValidationError, match=message):
        load_predict_settings({"model": {"source": "m"}, "input": "x.sgy", **override})


@pytest.mark.slow
def test_predict_cli_engine_ray_starts_its_own_instance(models, volume, tmp_path):
    pytest.importorskip("ray.data", reason="Ray is an optional extra: pip install -e '.[ray]'")
    want = local_outputs(models["cnn2d_crossline"], volume, tmp_path / "local")
    got = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",  # every module the driver imports, on stderr
            str(REPO / "scripts" / "predict.py"),
            "engine=ray",
            "ray.actors=2",
            f"model.source={models['cnn2d_crossline']}",
            f"input={volume}",
            f"output.classes={got / 'classes.sgy'}",
            f"output.max_probability={got / 'maxprob.sgy'}",
            f"output.summary={got / 'summary.parquet'}",
            "chunk.chunk_inlines=3",
            "runtime.providers=[CPUExecutionProvider]",
            "progress=false",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **LOOPBACK},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_outputs(got, want)
    heavy = re.findall(r"\|\s+(torch|lightning)(?:\.\S+)?\s*$", proc.stderr, flags=re.MULTILINE)
    assert heavy == [], "the Ray engine's driver imported torch or Lightning"

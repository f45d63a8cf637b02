"""scripts/predict.py killed mid-volume by real signals: SIGTERM / SIGINT clean up and say so; after a SIGKILL
the next run removes the partial files it left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from seismic.io.atomic import partial_files
from seismic.io.segy import write_cube

from .models import export_tiny

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_signals")
    model = export_tiny(root / "cnn1d", "cnn1d", length=16)
    rng = np.random.default_rng(0)
    big, small = root / "big.sgy", root / "small.sgy"
    # big enough that scoring at batch_size 16 takes many seconds: the signal lands mid-volume
    write_cube(big, (rng.normal(size=(40, 40, 120)) * 250).astype(np.float32), 4.0)
    write_cube(small, (rng.normal(size=(3, 4, 20)) * 250).astype(np.float32), 4.0)
    return model, big, small


def predict(model: Path, cube: Path, out: Path, tmp_path: Path, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable,
        str(REPO / "scripts" / "predict.py"),
        f"model.source={model}",
        f"input={cube}",
        f"output.classes={out / 'survey.classes.sgy'}",
        "runtime.providers=[CPUExecutionProvider]",
        "runtime.intra_op_threads=1",
        "chunk.chunk_inlines=1",
        "chunk.batch_size=16",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        *extra,
    ]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outputs(out: Path) -> list[Path]:
    return [out / "survey.classes.sgy", out / "survey.classes.summary.parquet"]


def wait_for_partials(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + 90
    while len([p for o in outputs(out) for p in partial_files(o)]) < 2:
        assert proc.poll() is None, f"predict ended before scoring started: {proc.communicate()}"
        assert time.monotonic() < deadline, "predict never started writing"
        time.sleep(0.02)
    time.sleep(0.3)  # some chunks scored


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_volume_removes_partials_and_says_so(setup, tmp_path, sig):
    model, big, _ = setup
    out = tmp_path / "out"
    log = ["log.enabled=true", f"log.directory={tmp_path / 'log'}", "log.sample_fraction=0.01"]
    proc = predict(model, big, out, tmp_path, *log)
    try:
        wait_for_partials(proc, out)
        proc.send_signal(sig)
        proc.send_signal(sig)  # impatient: a second one must not break off the cleanup
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"predict interrupted by {sig.name}: removed partial file(s) ")
    assert ".survey.classes.sgy." in lines[0] and ".survey.classes.summary.parquet." in lines[0]
    assert sorted(p.name for p in out.iterdir()) == []  # no partial, no output
    logged = list((tmp_path / "log").rglob("*"))  # the sampled windows scored so far were flushed, whole
    assert any(p.suffix == ".parquet" for p in logged) and not [p for p in logged if p.name.startswith(".")]


def test_sigkill_leaves_partials_that_the_next_run_removes(setup, tmp_path):
    model, big, small = setup
    out = tmp_path / "out"
    proc = predict(model, big, out, tmp_path)
    try:
        wait_for_partials(proc, out)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = [p for o in outputs(out) for p in partial_files(o)]
    assert len(stale) == 2  # a SIGKILL runs no cleanup: this is the junk the next run must handle
    rerun = predict(model, small, out, tmp_path)
    stdout, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr[-2000:]
    assert f"predict: removed 2 stale partial file(s) of an interrupted run: {stale[0]}" in stderr
    assert "windows/s" in stdout
    assert sorted(p.name for p in out.iterdir()) == ["survey.classes.sgy", "survey.classes.summary.parquet"]

"""Late labels: ingested from CSV, Parquet and label volumes, validated (rejects reported with the reason),
deduplicated, corrections win, joined to the inference log and to a batch-scored class volume."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from seismic.io.segy import write_cube
from seismic.monitoring.quality.labels import (
    LabelError,
    evaluate_volume,
    ingest_labels,
    join_online,
    read_labels,
)
from serving.inference_log import InferenceLogWriter

CLASSES = ["sand", "shale", "salt"]
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    """Requests r0, r1, r2 of 10 windows each in an inference log."""
    folder = tmp_path_factory.mktemp("log")
    rng = np.random.default_rng(0)
    with InferenceLogWriter(folder, dt_ms=4.0) as writer:
        for r in range(3):
            x = rng.normal(size=(10, 1, 32)).astype(np.float32)
            p = rng.dirichlet(np.ones(3), size=10).astype(np.float32)
            writer.log(f"r{r}", "1", x, p.argmax(axis=1), p, np.zeros((10, 4), np.float32), 0.01)
    return folder


def csv(path, text: str):
    path.write_text(text)
    return path


def test_online_labels_are_validated_deduplicated_and_corrected(log_dir, tmp_path):
    labels = tmp_path / "labels"
    source = csv(
        tmp_path / "a.csv",
        "request_id,window_index,class_name\n"
        "r0,0,sand\nr0,1,shale\nr0,1,shale\n"  # the same row twice: one label
        "r1,2,granite\n"  # not a class of the model
        "r9,0,salt\nr0,99,salt\n"  # never served
        "r2,3,sand\nr2,3,salt\n",  # two labels for one window in one file: which is true?
    )
    result = ingest_labels(source, labels, class_names=CLASSES, log_dir=log_dir, now=T0)
    assert result.kind == "online" and result.rows == 8 and result.stored == 2 and result.duplicates == 1
    assert result.rejected == {
        "different labels for one key in this source": 2,
        f"request id / window index not in the inference log {log_dir}": 2,
        f"unknown class (the model has 3: {CLASSES})": 1,
    }
    assert result.examples[f"unknown class (the model has 3: {CLASSES})"][0]["given"] == "granite"
    rejected = pq.read_table(next((labels / "rejected").iterdir()))
    assert rejected.num_rows == 5 and "reason" in rejected.column_names  # kept with the reason, not dropped

    again = ingest_labels(source, labels, class_names=CLASSES, log_dir=log_dir, now=T0 + dt.timedelta(1))
    assert again.stored == 0 and again.duplicates == 3  # nothing new: nothing written twice

    fix = csv(tmp_path / "b.csv", "request_id,window_index,label\nr0,1,2\nr1,5,0\n")
    fixed = ingest_labels(fix, labels, class_names=CLASSES, log_dir=log_dir, now=T0 + dt.timedelta(2))
    assert fixed.stored == 2 and fixed.relabelled == 1
    table = read_labels(labels, "online").sort_by(
        [("request_id", "ascending"), ("window_index", "ascending")]
    )
    assert table.select(["request_id", "window_index", "label"]).to_pylist() == [
        {"request_id": "r0", "window_index": 0, "label": 0},
        {"request_id": "r0", "window_index": 1, "label": 2},  # the correction wins
        {"request_id": "r1", "window_index": 5, "label": 0},
    ]
    got = join_online(table, np.array(["r0", "r0", "r1", "r2"]), np.array([1, 0, 5, 0]))
    np.testing.assert_array_equal(got, [2, 0, 0, -1])


def test_parquet_source_with_class_ids(log_dir, tmp_path):
    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"request_id": ["r1", "r1"], "window_index": [0, 1], "label": [1, 7]}), path)
    result = ingest_labels(path, tmp_path / "labels", class_names=CLASSES, log_dir=log_dir)
    assert result.stored == 1 and sum(result.rejected.values()) == 1


def test_label_volume_against_a_scored_cube(tmp_path):
    shape = (4, 5, 20)
    rng = np.random.default_rng(1)
    scored = rng.integers(0, 3, shape).astype(np.float32)
    scored[:, :, :2] = -1  # edge samples the batch job left unscored
    grid = write_cube(tmp_path / "classes.sgy", scored, 4.0, inlines=np.arange(100, 104),
                      crosslines=np.arange(10, 15))  # fmt: skip
    truth = scored.copy()
    flip = rng.random(shape) < 0.25  # a quarter of the labels disagree with the model
    truth[flip] = (truth[flip] + 1) % 3
    truth[:, :, :2] = rng.integers(0, 3, (4, 5, 2))
    truth[0] = -1  # inline 100 unlabelled
    np.save(tmp_path / "truth.npy", truth.astype(np.int16))
    labels = tmp_path / "labels"
    with pytest.raises(LabelError, match="pass grid="):
        ingest_labels(tmp_path / "truth.npy", labels, class_names=CLASSES, volume="f3")
    result = ingest_labels(tmp_path / "truth.npy", labels, class_names=CLASSES, volume="f3", grid=grid)
    assert result.kind == "survey" and result.stored == 3 * 5 * 20 and not result.rejected

    out = evaluate_volume(labels, "f3", grid, CLASSES)
    inner = (slice(1, 4), slice(None), slice(2, None))
    expected = float((truth[inner] == scored[inner]).mean())
    assert out["accuracy"] == pytest.approx(expected) and out["rows"] == 3 * 5 * 18
    assert out["unscored"] == 3 * 5 * 2 and out["outside_volume"] == 0
    assert set(out["recall"]) <= set(CLASSES)

    coords = csv(tmp_path / "c.csv", "inline,crossline,sample,class_name\n101,10,5,salt\n999,10,5,salt\n")
    result = ingest_labels(coords, labels, class_names=CLASSES, volume="f3", grid=grid)
    assert result.stored + result.duplicates == 1  # inline 101 is in the grid (stored, or the same label)
    assert result.rejected == {f"coordinates outside the grid of {grid}": 1}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.csv", "id,label\n1,2\n", "need the columns request_id"),
        ("y.csv", "request_id,window_index\nr0,1\n", "no label column"),
        ("z.txt", "", "label files are"),
    ],
)
def test_unusable_sources_are_errors_naming_the_file(tmp_path, name, text, message):
    path = csv(tmp_path / name, text)
    with pytest.raises(LabelError, match=message):
        ingest_labels(path, tmp_path / "labels", class_names=CLASSES)
    with pytest.raises(LabelError, match="no such label file"):
        ingest_labels(tmp_path / "missing.csv", tmp_path / "labels", class_names=CLASSES)


def test_cli_ingests_reports_rejects_and_fails_cleanly(log_dir, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    model = tmp_path / "model"
    model.mkdir()
    (model / "metadata.json").write_text(json.dumps({"class_names": CLASSES}))
    source = csv(tmp_path / "l.csv", "request_id,window_index,label\nr0,4,1\nr0,5,9\n")
    script = Path(__file__).resolve().parents[2] / "scripts" / "labels.py"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), *args], capture_output=True, text=True, check=False
        )

    common = ["--model-dir", str(model), "--labels-dir", str(tmp_path / "labels")]
    done = cli("ingest", str(source), *common, "--log-dir", str(log_dir))
    assert done.returncode == 1, done.stderr  # one row rejected: reported in the JSON, exit 1
    out = json.loads(done.stdout)
    assert out["stored"] == 1 and list(out["rejected"].values()) == [1]
    bad = cli("ingest", str(tmp_path / "nope.csv"), *common)
    assert bad.returncode == 2 and "no such label file" in bad.stderr and "Traceback" not in bad.stderr

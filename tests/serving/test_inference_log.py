from __future__ import annotations

import datetime as dt
import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

import serving.inference_log as inference_log
import serving.inference_log_rows as inference_log_rows
import serving.inference_log_schema as inference_log_schema
from seismic.features import FEATURE_NAMES, window_features
from serving.inference_log import InferenceLogWriter, log_schema, read_inference_log

DT_MS = 4.0


def request(n: int, seed: int = 0, shape: tuple[int, ...] = (1, 32)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(4), size=n).astype(np.float32)
    return {
        "windows": rng.normal(size=(n, *shape)).astype(np.float32),
        "classes": probabilities.argmax(axis=1),
        "probabilities": probabilities,
        "embeddings": rng.normal(size=(n, 8)).astype(np.float32),
    }


def log(writer: InferenceLogWriter, request_id: str, r: dict[str, np.ndarray], latency: float = 0.01) -> None:
    writer.log(request_id, "7", r["windows"], r["classes"], r["probabilities"], r["embeddings"], latency)


def test_rows_round_trip(tmp_path):
    one, two = request(5, seed=1), request(3, seed=2, shape=(1, 4, 32))  # a trace model and a patch model
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS, flush_seconds=60) as writer:
        log(writer, "a", one, latency=0.5)
        log(writer, "b", two, latency=0.25)
    assert writer.stats.rows_written == 8 and writer.stats.rows_pending == 0
    table = read_inference_log(tmp_path).sort_by([("request_id", "ascending"), ("window_index", "ascending")])
    assert table.num_rows == 8
    assert table.column("request_id").to_pylist() == ["a"] * 5 + ["b"] * 3
    assert table.column("model_version").to_pylist() == ["7"] * 8
    assert table.column("latency_s").to_pylist() == [0.5] * 5 + [0.25] * 3
    for rows, r in ((slice(0, 5), one), (slice(5, 8), two)):
        part = table.slice(rows.start, rows.stop - rows.start)
        features = np.column_stack([part.column(name).to_numpy() for name in FEATURE_NAMES])
        np.testing.assert_array_equal(features, window_features(r["windows"], DT_MS))
        np.testing.assert_array_equal(part.column("predicted_class").to_numpy(), r["classes"])
        np.testing.assert_array_equal(np.stack(part.column("probabilities").to_pylist()), r["probabilities"])
        np.testing.assert_array_equal(np.stack(part.column("embedding").to_pylist()), r["embeddings"])
        np.testing.assert_array_equal(part.column("max_probability").to_numpy(), r["probabilities"].max(1))
    stamps = table.column("timestamp").to_pylist()
    assert all(abs(s - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1) for s in stamps)
    # each file carries the schema version, and its vectors are fixed-size
    files = list(tmp_path.rglob("*.parquet"))
    schema = ds.dataset(files[0]).schema
    assert schema.metadata[b"seismic.inference_log"] == str(inference_log.LOG_SCHEMA_VERSION).encode()
    assert schema.field("embedding").type == log_schema(4, 8).field("embedding").type
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]  # no temporary file left


def test_partitioned_by_hour_and_read_selectively(tmp_path, monkeypatch):
    base = dt.datetime(2024, 3, 1, 22, 30, tzinfo=dt.UTC)
    hours = [base + dt.timedelta(hours=h) for h in range(4)]  # 22:30, 23:30, 00:30 and 01:30 the next day
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS, flush_seconds=60) as writer:
        for i, when in enumerate(hours):
            monkeypatch.setattr(inference_log.time, "time_ns", lambda w=when: int(w.timestamp() * 1e9))
            log(writer, f"r{i}", request(2, seed=i))
    monkeypatch.undo()
    folders = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("*/*"))
    assert folders == [
        "date=2024-03-01/hour=22",
        "date=2024-03-01/hour=23",
        "date=2024-03-02/hour=00",
        "date=2024-03-02/hour=01",
    ]
    table = read_inference_log(tmp_path, start=hours[1], end=hours[3], columns=["request_id", "mean"])
    assert table.column_names == ["request_id", "mean"]
    assert sorted(table.column("request_id").to_pylist()) == ["r1", "r1", "r2", "r2"]
    # naive datetimes are UTC; the partition filter alone opens only the overlapping hour folders
    naive = read_inference_log(
        tmp_path, start=hours[1].replace(tzinfo=None), end=hours[3].replace(tzinfo=None)
    )
    assert naive.num_rows == 4
    partitioning = ds.partitioning(inference_log_schema.PARTITIONING, flavor="hive")
    dataset = ds.dataset(tmp_path, format="parquet", partitioning=partitioning)
    pruned = list(dataset.get_fragments(filter=inference_log_schema._hour_filter(hours[1], hours[2])))
    assert len(pruned) == 2
    assert read_inference_log(tmp_path / "missing").num_rows == 0
    with pytest.raises(ValueError, match="unknown column"):
        read_inference_log(tmp_path, columns=["nope"])


def test_sampling_fraction(tmp_path):
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS, sample_fraction=0.1, seed=0, flush_seconds=60) as writer:
        for i in range(20):
            log(writer, f"r{i}", request(500, seed=i))
    stats = writer.stats
    assert stats.rows_written + stats.rows_sampled_out == 10_000
    assert 850 <= stats.rows_written <= 1150  # binomial(10000, 0.1): +-5 sigma
    assert read_inference_log(tmp_path).num_rows == stats.rows_written


def test_full_buffer_drops_and_counts_without_blocking(tmp_path, monkeypatch, caplog):
    gate = threading.Event()

    def stalled_features(windows, dt_ms):
        gate.wait(10)  # the writer thread is stuck: the buffer can only fill up
        return window_features(windows, dt_ms)

    monkeypatch.setattr(inference_log_rows, "window_features", stalled_features)
    writer = InferenceLogWriter(tmp_path, dt_ms=DT_MS, flush_rows=10, max_buffer_rows=50, flush_seconds=60)
    with caplog.at_level(logging.WARNING, logger="serving.inference_log"):
        started = time.perf_counter()
        for i in range(8):
            log(writer, f"r{i}", request(20, seed=i))
        assert time.perf_counter() - started < 1.0  # never waits for the writer
    assert writer.stats.rows_accepted == 50 and writer.stats.rows_dropped == 110
    warnings = [r for r in caplog.records if "buffer full" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited: one line, not one per request
    gate.set()
    writer.close()
    assert writer.stats.rows_written == 50
    assert read_inference_log(tmp_path).num_rows == 50


def test_failing_disk_is_logged_counted_and_retried(tmp_path, monkeypatch, caplog):
    real_write = inference_log.pq.write_table
    failures = {"left": 2}

    def flaky_write(table, where, **kwargs):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(table, where, **kwargs)

    monkeypatch.setattr(inference_log.pq, "write_table", flaky_write)
    writer = InferenceLogWriter(tmp_path, dt_ms=DT_MS, flush_seconds=60)
    with caplog.at_level(logging.ERROR, logger="serving.inference_log"):
        log(writer, "a", request(4))
        assert writer.flush(10)
        log(writer, "b", request(3))  # the API keeps logging while the disk is full
        assert writer.flush(10)
    assert writer.stats.write_errors == 2 and writer.stats.rows_pending == 7
    assert "No space left on device" in caplog.text and "kept for a retry" in caplog.text
    assert not list(tmp_path.rglob("*.partial"))
    assert writer.flush(10)  # the disk is back: nothing was lost
    writer.close()
    assert writer.stats.rows_written == 7 and writer.stats.rows_lost == 0
    assert read_inference_log(tmp_path).num_rows == 7


def test_unwritable_directory_never_raises_into_the_caller(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the log folder should be")
    writer = InferenceLogWriter(blocker / "log", dt_ms=DT_MS, flush_seconds=60)
    with caplog.at_level(logging.ERROR, logger="serving.inference_log"):
        log(writer, "a", request(4))
        writer.close()
    assert writer.stats.write_errors == 1 and writer.stats.rows_lost == 4
    assert "cannot write 4 row(s)" in caplog.text
    log(writer, "late", request(2))  # after close: counted, not raised
    assert writer.stats.rows_dropped == 2


CHILD = """
import sys, time
import numpy as np
from serving.inference_log import InferenceLogWriter, install_sigterm_flush

writer = InferenceLogWriter(sys.argv[1], dt_ms=4.0, flush_rows=100_000, max_buffer_rows=200_000,
                            flush_seconds=600)
install_sigterm_flush(writer)
rng = np.random.default_rng(0)
windows = rng.normal(size=(3, 1, 32)).astype(np.float32)
probabilities = np.full((3, 4), 0.25, dtype=np.float32)
embeddings = np.zeros((3, 8), dtype=np.float32)
with open(sys.argv[2], "w", buffering=1) as acked:
    for i in range(1_000_000):
        writer.log(f"r{i}", "1", windows, np.zeros(3, int), probabilities, embeddings, 0.001)
        acked.write(f"r{i}\\n")  # the API answered this request
        if i == 50:
            print("ready", flush=True)
        time.sleep(0.0005)
"""


def test_sigterm_under_load_loses_no_row(tmp_path):
    acked = tmp_path / "acked.txt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(tmp_path / "log"), str(acked)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert child.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == -signal.SIGTERM  # still dies by the signal, after the flush
    acked_ids = set(acked.read_text().split())
    table = read_inference_log(tmp_path / "log", columns=["request_id"])
    logged = table.column("request_id").to_pylist()
    assert len(acked_ids) > 50
    assert acked_ids <= set(logged)
    assert len(logged) == 3 * len(set(logged))  # whole requests only, each row once


def test_features_of_a_fraction_of_rows_outputs_of_all(tmp_path):
    r = request(2000, seed=4)
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS, feature_fraction=0.25, seed=0) as writer:
        log(writer, "a", r)
    table = read_inference_log(tmp_path).sort_by("window_index")
    has = table.column("has_features").to_numpy(zero_copy_only=False)
    assert table.num_rows == 2000 and writer.stats.rows_with_features == has.sum()
    assert 400 < has.sum() < 600  # binomial(2000, 0.25): mean 500, sd 19
    np.testing.assert_array_equal(table.column("predicted_class").to_numpy(), r["classes"])
    features = np.column_stack([table.column(n).to_numpy(zero_copy_only=False) for n in FEATURE_NAMES])
    np.testing.assert_array_equal(features[has], window_features(r["windows"][has], DT_MS))
    assert table.column(FEATURE_NAMES[0]).null_count == 2000 - has.sum()  # null, not NaN, without features


def test_feature_rate_is_capped_by_a_token_bucket(tmp_path):
    rate = 300.0
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS, feature_rate=rate, seed=0) as writer:
        started = time.monotonic()
        for i in range(40):  # 40 requests of 64 windows over ~1 s: 2560 windows offered
            log(writer, f"r{i}", request(64, seed=i))
            time.sleep(0.025)
        elapsed = time.monotonic() - started
    stats = writer.stats
    assert stats.rows_written == 2560
    # one second's worth at once, then the rate: never more, and the bucket is not starved either
    assert rate <= stats.rows_with_features <= rate * (1 + elapsed) + 1
    table = read_inference_log(tmp_path)
    has = table.column("has_features").to_numpy(zero_copy_only=False)
    spread = np.bincount(table.column("window_index").to_numpy()[has], minlength=64)
    assert (spread > 0).sum() > 48  # a random subset of each request, not its first windows


def test_version_1_files_read_as_rows_with_features(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with InferenceLogWriter(tmp_path, dt_ms=DT_MS) as writer:
        log(writer, "a", request(4))
    (path,) = tmp_path.rglob("*.parquet")
    old = pq.read_table(path).drop_columns(["has_features"])
    old = old.replace_schema_metadata({b"seismic.inference_log": b"1"})
    pq.write_table(old, path)
    table = read_inference_log(tmp_path)
    assert table.column("has_features").null_count == 4  # the monitor reads null as "has features"
    assert pa.compute.all(pa.compute.is_valid(table.column(FEATURE_NAMES[0]))).as_py()


def test_window_classifier_rows_label_one_sample_and_version_2_files_read_as_null(tmp_path):
    import pyarrow.parquet as pq

    r = request(4)
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS) as writer:
        log(writer, "a", r)
    (path,) = tmp_path.rglob("*.parquet")
    table = read_inference_log(tmp_path).sort_by("window_index")
    shares = np.stack(table.column("class_shares").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(shares, np.eye(4)[r["classes"]])
    np.testing.assert_array_equal(table.column("mean_max_probability").to_numpy(), r["probabilities"].max(1))
    old = pq.read_table(path).drop_columns(["class_shares", "mean_max_probability"])
    pq.write_table(old.replace_schema_metadata({b"seismic.inference_log": b"2"}), path)
    again = read_inference_log(tmp_path)
    assert again.num_rows == 4 and again.column("class_shares").null_count == 4


def test_tile_columns_come_together_and_one_per_tile(tmp_path):
    with InferenceLogWriter(tmp_path, dt_ms=DT_MS) as writer:
        r = request(3)
        windows, classes, probabilities, embeddings = (
            r[k] for k in ("windows", "classes", "probabilities", "embeddings")
        )
        with pytest.raises(ValueError, match="come together"):
            writer.log(
                "a", "1", windows, classes, probabilities, embeddings, 0.01, class_shares=probabilities
            )
        with pytest.raises(ValueError, match="3 tiles but 2 class-share rows"):
            writer.log(
                "a", "1", windows, classes, probabilities, embeddings, 0.01,
                class_shares=probabilities[:2], mean_max_probability=probabilities.max(axis=1)[:2],
            )  # fmt: skip


@pytest.mark.parametrize(
    ("option", "value"), [("feature_fraction", 1.5), ("feature_rate", 0.0), ("feature_rate", float("nan"))]
)
def test_bad_feature_sampling_options_are_named(tmp_path, option, value):
    with pytest.raises(ValueError, match=option):
        InferenceLogWriter(tmp_path, dt_ms=DT_MS, **{option: value})

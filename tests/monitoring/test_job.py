"""The monitoring job end to end: a log written by InferenceLogWriter, a profile built here, both reports."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import generate_latest

from seismic.data.survey import Survey
from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
from seismic.data.windows import WindowSpec, extract_windows, sample_centres
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.job.metrics import drift_registry
from seismic.monitoring.job.run import (
    JobSettings,
    MonitoringError,
    load_reference,
    parse_granularity,
    run_monitoring,
    write_reports,
)
from seismic.monitoring.profile import build_profile
from serving.inference_log import InferenceLogWriter

ROOT = Path(__file__).resolve().parents[2]
SPEC = WindowSpec(length=64)
CLASSES = ["a", "b", "c", "d", "e", "f"]
WINDOW_ROWS = 600
FAST = {"embedding": {"mmd": {"permutations": 99}}, "calibration": {"n_chunks": 8}}


class _Net:
    """A numpy stand-in for the network: what the job sees of a model is its logged outputs."""

    def __init__(self, scale: float) -> None:
        rng = np.random.default_rng(0)
        self.scale, self.proj, self.head = scale, rng.normal(size=(64, 8)) / 8.0, rng.normal(size=(8, 6))

    def __call__(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb = np.tanh(raw[:, 0, :] / self.scale @ self.proj).astype(np.float32)
        logits = emb @ self.head
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32), emb


def reference_model(root: Path) -> tuple[Survey, _Net, Path]:
    """A survey, the stand-in network, and a model folder holding the reference profile of that survey."""
    survey = generate_survey(SyntheticSurveyConfig(n_inlines=32, n_crosslines=24, n_samples=320, seed=11))
    net = _Net(float(survey.amplitudes.std()))
    il, xl, t = sample_centres(survey.labels, 4000, SPEC, balance=False, seed=0)
    raw = extract_windows(survey.amplitudes, il, xl, t, SPEC)
    probs, emb = net(raw)
    model_dir = root / "model"
    model_dir.mkdir()
    build_profile(
        raw,
        survey.labels[il, xl, t],
        probs,
        emb,
        dt_ms=survey.dt_ms,
        class_names=CLASSES,
        max_embeddings=1500,
        survey=np.zeros(len(il), np.int64),
        inline=il,
    ).save(model_dir)
    return survey, net, model_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model folder with a profile of one survey; a log: 3 plain windows, then 2 with gain x3."""
    root = tmp_path_factory.mktemp("job")
    survey, net, model_dir = reference_model(root)

    log_dir = root / "log"
    with InferenceLogWriter(log_dir, dt_ms=survey.dt_ms, flush_rows=10_000, max_buffer_rows=20_000) as writer:
        for k in range(5):
            c = sample_centres(survey.labels, WINDOW_ROWS, SPEC, balance=False, seed=100 + k)
            x = extract_windows(survey.amplitudes, *c, SPEC) * (3.0 if k >= 3 else 1.0)
            p, e = net(x)
            for part in np.array_split(np.arange(WINDOW_ROWS), 3):  # several requests per window
                writer.log(f"r{k}", "1", x[part], p[part].argmax(axis=1), p[part], e[part], 0.01)
    return model_dir, log_dir


@pytest.fixture(scope="module")
def sampled_logs(setup, tmp_path_factory):
    """The same traffic as ``setup`` logged with features for half, then a tenth, of the rows."""
    model_dir, _ = setup
    root = tmp_path_factory.mktemp("sampled")
    survey = generate_survey(SyntheticSurveyConfig(n_inlines=32, n_crosslines=24, n_samples=320, seed=11))
    net = _Net(float(survey.amplitudes.std()))
    logs = {}
    for fraction in (0.5, 0.1):
        log_dir = logs[fraction] = root / f"log-{fraction}"
        with InferenceLogWriter(
            log_dir, dt_ms=survey.dt_ms, flush_rows=10_000, feature_fraction=fraction, seed=1
        ) as writer:
            for k in range(5):
                c = sample_centres(survey.labels, WINDOW_ROWS, SPEC, balance=False, seed=100 + k)
                x = extract_windows(survey.amplitudes, *c, SPEC) * (3.0 if k >= 3 else 1.0)
                p, e = net(x)
                writer.log(f"r{k}", "1", x, p.argmax(axis=1), p, e, 0.01)
    return model_dir, logs


def test_features_of_a_sample_of_rows_feed_the_feature_tests_only(sampled_logs):
    model_dir, logs = sampled_logs
    ref = load_reference(model_dir, DriftConfig.from_mapping({**FAST, "min_rows": 200}))
    half = run_monitoring(_settings(logs[0.5], WINDOW_ROWS, compare_previous=False), ref)["windows"]
    assert [w["drifted"] for w in half] == [False, False, False, True, True]
    for w in half:
        rows = w["rows"]
        assert rows["predictions"] == rows["embedding"] == WINDOW_ROWS  # every row's outputs
        assert 200 <= rows["raw"] < 400 and w["insufficient_families"] == []  # ~300 rows with features
        assert w["window"]["quality"]["feature_rows"] == rows["raw"]
        assert all(f["n_current"] == rows["raw"] for f in w["raw"]["features"])
    assert half[3]["raw"]["drifted"] and half[3]["polarity"] is not None

    tenth = run_monitoring(_settings(logs[0.1], WINDOW_ROWS), ref)["windows"]  # previous: no feature family
    for w in tenth:  # ~60 rows with features: too few for the feature tests, enough for the others
        assert w["status"] == "ok" and w["insufficient_families"] == ["raw"]
        assert w["raw"]["features"] == [] and w["polarity"] is None
        assert w["rows"]["predictions"] == WINDOW_ROWS
    assert [w["drifted"] for w in tenth] == [False, False, False, True, True]  # the embedding still sees it
    assert all(w["embedding"]["drifted"] for w in tenth[3:])


def _settings(log_dir, granularity, **kw) -> JobSettings:
    now = dt.datetime.now(dt.UTC)
    return JobSettings(log_dir, now - dt.timedelta(hours=2), now + dt.timedelta(hours=1), granularity, **kw)


def test_row_windows_flag_the_shifted_ones_only(setup, tmp_path):
    model_dir, log_dir = setup
    ref = load_reference(model_dir, DriftConfig.from_mapping(FAST))
    assert ref.info["calibration_groups"] == "survey x inline blocks" and ref.info["n_surveys"] == 1
    report = run_monitoring(_settings(log_dir, WINDOW_ROWS), ref)
    windows = report["windows"]
    assert [w["drifted"] for w in windows] == [False, False, False, True, True]
    assert report["summary"]["verdict"] == "drift" and report["summary"]["n_drifted"] == 2
    shifted = windows[3]
    assert shifted["raw"]["drifted"] and shifted["embedding"]["drifted"]
    assert shifted["window"]["quality"]["rows"] == WINDOW_ROWS
    assert shifted["window"]["quality"]["out_of_range_fraction"] > 0.2  # gain x3 leaves the reference range
    assert windows[0]["window"]["quality"]["nonfinite_fraction"] == 0.0
    previous = [w["window"]["previous"] for w in windows]
    assert previous[0]["status"] == "no_previous_window"
    assert [p["drifted"] for p in previous[1:]] == [False, False, True, False]  # the change, then steady
    json_path, html_path = write_reports(report, tmp_path)
    assert json.loads(json_path.read_text())["summary"]["drifted_windows"] == ["rows-3", "rows-4"]
    assert "Embedding projection" in html_path.read_text()

    metrics = generate_latest(drift_registry(report)).decode()
    assert "seismic_drift_detected 1.0" in metrics and 'seismic_drift_windows{verdict="drift"} 2.0' in metrics
    assert 'seismic_drift_quality{check="out_of_range"}' in metrics


def test_time_windows_sampling_and_too_few_rows(setup):
    model_dir, log_dir = setup
    ref = load_reference(model_dir, DriftConfig.from_mapping({**FAST, "min_rows": 200}))
    report = run_monitoring(_settings(log_dir, "1h", max_rows_per_window=1000, compare_previous=False), ref)
    statuses = [(w["status"], w["n_current"], w["window"]["quality"]["rows"]) for w in report["windows"]]
    assert len(statuses) == 3  # the range's hours, aligned to start; all rows fall into one or two of them
    assert sum(rows for *_, rows in statuses) == 5 * WINDOW_ROWS  # quality counts every row
    assert all(n <= 1000 for _, n, _ in statuses)  # tests run on the bounded sample
    assert ("insufficient_data", 0, 0) in statuses and report["summary"]["verdict"] == "drift"

    small = run_monitoring(_settings(log_dir, 50, compare_previous=False), ref)
    assert {w["status"] for w in small["windows"]} == {"insufficient_data"}
    assert small["summary"]["verdict"] == "insufficient_data"


def test_granularity_parsing():
    assert parse_granularity("15min") == dt.timedelta(minutes=15)
    assert parse_granularity("1d") == dt.timedelta(days=1) and parse_granularity("5000") == 5000
    for bad in ("1 week", "0h", "h", 0):
        with pytest.raises(ValueError, match="granularity"):
            parse_granularity(bad)


def test_empty_log_and_missing_profile_are_clear_errors(setup, tmp_path):
    model_dir, _ = setup
    ref = load_reference(model_dir, DriftConfig.from_mapping(FAST))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MonitoringError, match="has no rows between"):
        run_monitoring(_settings(tmp_path / "empty", "1h"), ref)
    with pytest.raises(MonitoringError, match="does not exist"):
        run_monitoring(_settings(tmp_path / "nowhere", "1h"), ref)
    with pytest.raises(MonitoringError, match="no reference profile"):
        load_reference(tmp_path, DriftConfig())


def _cli(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts/monitor.py"), *overrides],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def test_cli_writes_both_reports_and_fails_cleanly_on_an_empty_log(setup, tmp_path):
    model_dir, log_dir = setup
    now = dt.datetime.now(dt.UTC)
    window = [
        f"start={(now - dt.timedelta(hours=2)):%Y-%m-%dT%H:%M}",
        f"end={(now + dt.timedelta(hours=1)):%Y-%m-%dT%H:%M}",
    ]
    fast = [
        "drift.embedding.mmd.permutations=99",
        "drift.calibration.n_chunks=8",
        "hydra.run.dir=" + str(tmp_path / "h"),
    ]
    ok = _cli(
        f"model_dir={model_dir}",
        f"log_dir={log_dir}",
        "granularity=1h",
        "compare_previous=false",
        f"output_dir={tmp_path}",
        *window,
        *fast,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["verdict"] == "drift"
    assert (tmp_path / "drift_report.json").is_file() and (tmp_path / "drift_report.html").is_file()

    (tmp_path / "empty").mkdir()
    bad = _cli(
        f"model_dir={model_dir}",
        f"log_dir={tmp_path / 'empty'}",
        f"output_dir={tmp_path / 'x'}",
        *window,
        *fast,
    )
    assert bad.returncode == 2
    assert "monitor failed: the inference log" in bad.stderr and "Traceback" not in bad.stderr

"""Performance in the monitoring job: the label-free estimate per window, realised metrics where late labels
came back, the alert on a drop beyond the reference's threshold, and its gauges."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from prometheus_client import generate_latest

from seismic.data.windows import extract_windows, sample_centres
from seismic.monitoring.alerting.engine import AlertSettings, describe
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.job.metrics import drift_registry
from seismic.monitoring.job.run import JobSettings, load_reference, run_monitoring, write_reports
from seismic.monitoring.quality.labels import ingest_labels
from seismic.monitoring.quality.performance import confusion, metrics
from seismic.monitoring.quality.window import QualitySettings
from serving.inference_log import InferenceLogWriter

from .test_job import CLASSES, FAST, SPEC, reference_model

ROWS = 600


def flatter(p: np.ndarray, temperature: float) -> np.ndarray:
    """The same predictions, far less sure: what a model that got worse says about its windows."""
    logp = np.log(np.maximum(p, 1e-12)) / temperature
    q = np.exp(logp - logp.max(axis=1, keepdims=True))
    return (q / q.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Three windows of rows: as the reference, as the reference, then with much flatter probabilities."""
    root = tmp_path_factory.mktemp("quality-job")
    survey, net, model_dir = reference_model(root)
    truth = {}
    with InferenceLogWriter(root / "log", dt_ms=survey.dt_ms, flush_rows=10_000) as writer:
        for k in range(3):
            c = sample_centres(survey.labels, ROWS, SPEC, balance=False, seed=200 + k)
            x = extract_windows(survey.amplitudes, *c, SPEC)
            p, e = net(x)
            if k == 2:
                p = flatter(p, 4.0)
            writer.log(f"q{k}", "1", x, p.argmax(axis=1), p, e, 0.01)
            truth[k] = (survey.labels[c], p.argmax(axis=1))
    return model_dir, root / "log", truth, root


def run(model_dir, log_dir, quality: QualitySettings):
    ref = load_reference(model_dir, DriftConfig.from_mapping(FAST), quality)
    now = dt.datetime.now(dt.UTC)
    settings = JobSettings(log_dir, now - dt.timedelta(hours=2), now + dt.timedelta(hours=1), ROWS,
                           compare_previous=False, quality=quality)  # fmt: skip
    return run_monitoring(settings, ref)


def test_estimate_per_window_and_alert_on_the_worse_one(setup, tmp_path):
    model_dir, log_dir, _, root = setup
    report = run(model_dir, log_dir, QualitySettings(labels_dir=root / "no-labels", n_draws=50))
    perf = [w["window"]["performance"] for w in report["windows"]]
    assert [p["labelled_rows"] for p in perf] == [0, 0, 0] and perf[0]["realised"] is None
    dropped = [p["judged"]["estimated"]["dropped"]["accuracy"] for p in perf]
    assert dropped == [False, False, True]
    low, high = perf[0]["estimated"]["band"]["accuracy"]
    assert low <= perf[0]["estimated"]["accuracy"] <= high
    assert (
        perf[2]["estimated"]["accuracy"]
        < perf[0]["estimated"]["accuracy"] - perf[2]["max_drop"]["estimated"]["accuracy"]
    )
    summary = report["meta"]["performance"]
    assert summary["dropped_windows"] == {"estimated": ["rows-2"], "realised": []}
    assert summary["latest"]["estimated"]["accuracy"] == perf[2]["estimated"]["accuracy"]
    _, html_path = write_reports(report, tmp_path)
    page = html_path.read_text()
    assert "id='performance'" in page and "DROP" in page and "id='maps'" not in page
    assert "estimated" in describe(report["windows"][2], {}, AlertSettings())
    assert not describe(report["windows"][0], {}, AlertSettings())
    text = generate_latest(drift_registry(report)).decode()
    assert 'seismic_quality_estimated{metric="accuracy"}' in text
    assert 'seismic_quality_estimated_band{bound="p5",metric="accuracy"}' in text
    assert "seismic_quality_labelled_rows 0.0" in text and "seismic_quality_realised{" not in text


def test_realised_metrics_where_late_labels_arrived(setup, tmp_path):
    model_dir, log_dir, truth, _ = setup
    labels_dir = tmp_path / "labels"
    true0, pred0 = truth[0]
    rows = [f"q0,{i},{CLASSES[t]}" for i, t in enumerate(true0[:400])]  # 400 of window 0's 600 rows
    rows += [f"q2,{i},{CLASSES[t]}" for i, t in enumerate(truth[2][0])]
    (tmp_path / "l.csv").write_text("request_id,window_index,class_name\n" + "\n".join(rows) + "\n")
    result = ingest_labels(tmp_path / "l.csv", labels_dir, class_names=CLASSES, log_dir=log_dir)
    assert result.stored == 1000 and not result.rejected

    report = run(model_dir, log_dir, QualitySettings(labels_dir=labels_dir, n_draws=50, min_labelled=100))
    perf = [w["window"]["performance"] for w in report["windows"]]
    assert [p["labelled_rows"] for p in perf] == [400, 0, ROWS]
    assert perf[0]["labelled_fraction"] == pytest.approx(400 / ROWS)
    want = metrics(confusion(true0[:400], pred0[:400], len(CLASSES)), CLASSES)
    assert perf[0]["realised"]["accuracy"] == pytest.approx(want["accuracy"])
    assert perf[0]["realised"]["macro_f1"] == pytest.approx(want["macro_f1"])
    assert perf[0]["realised"]["recall"] == pytest.approx(want["recall"])
    assert perf[1]["realised"] is None and perf[1]["judged"]["realised"] is None
    judged, reference = perf[2]["judged"]["realised"], perf[2]["reference"]["realised"]
    assert judged["drop"]["accuracy"] == pytest.approx(
        reference["accuracy"] - perf[2]["realised"]["accuracy"]
    )
    text = generate_latest(drift_registry(report)).decode()
    assert f"seismic_quality_labelled_rows {float(ROWS)}" in text
    assert (
        'seismic_quality_realised{metric="macro_f1"}' in text and "seismic_quality_realised_recall{" in text
    )

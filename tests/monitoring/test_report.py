"""JSON report schema and the HTML report."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.drift.detector import compare, fit_baseline
from seismic.monitoring.reports.html_report import write_html_report
from seismic.monitoring.reports.json_report import (
    SCHEMA_VERSION,
    ReportSchemaError,
    build_report,
    read_json_report,
    validate_report,
    write_json_report,
)


@pytest.fixture(scope="module")
def report():
    rng = np.random.default_rng(0)
    cfg = DriftConfig.from_mapping(
        {"embedding": {"mmd": {"permutations": 49}}, "calibration": {"n_chunks": 4}}
    )
    feats, emb, preds = rng.normal(size=(1200, 3)), rng.normal(size=(1200, 6)), rng.integers(0, 3, 1200)
    b = fit_baseline(
        cfg, features=feats, feature_names=["a", "b", "c"], predictions=preds, n_classes=3, embeddings=emb
    )
    windows = [
        compare(
            b,
            features=rng.normal(size=(400, 3)),
            predictions=rng.integers(0, 3, 400),
            embeddings=rng.normal(size=(400, 6)),
            window={"id": "t0"},
        ),
        compare(
            b,
            features=rng.normal(size=(400, 3)) * 2.0,
            predictions=rng.integers(0, 2, 400),
            embeddings=rng.normal(size=(400, 6)) + 1.0,
            window={"id": "t1"},
        ),
        compare(b, features=rng.normal(size=(20, 3)), window={"id": "t2"}),
    ]
    return build_report(windows, config=cfg, baseline=b.summary(), meta={"model": "test"})


def test_report_summary_and_schema(report, tmp_path):
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["summary"]["verdict"] == "drift"
    assert report["summary"]["drifted_windows"] == ["t1"]
    assert report["summary"]["n_insufficient"] == 1
    drifted = report["windows"][1]
    assert drifted["raw"]["drifted_features"] and drifted["embedding"]["drifted"]
    feature = next(f for f in drifted["raw"]["features"] if f["drifted"])
    assert feature["histogram"] is not None and feature["tests"]["ks"]["p_adjusted"] < 0.05
    path = write_json_report(report, tmp_path / "drift.json")
    assert read_json_report(path) == json.loads(json.dumps(report))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.pop("windows"), "lacks"),
        (lambda r: r.update(schema_version=99), "schema_version"),
        (
            lambda r: r["windows"][1]["embedding"]["tests"]["mmd"].pop("p_value"),
            r"windows\[1\].embedding.tests.mmd",
        ),
        (
            lambda r: r["windows"][0]["raw"]["features"][2]["tests"]["psi"].update(threshold="x"),
            r"features\[2\]",
        ),
        (lambda r: r["windows"][0].update(status="late"), "status"),
    ],
)
def test_broken_reports_name_the_path(report, edit, message):
    broken = copy.deepcopy(report)
    edit(broken)
    with pytest.raises(ReportSchemaError, match=message):
        validate_report(broken)


def test_html_report_has_its_sections(report, tmp_path):
    path = write_html_report(report, tmp_path / "drift.html")
    text = path.read_text()
    assert "id='summary' class='verdict drift'" in text and "DRIFT" in text
    for section in ("id='windows'", "Drift scores over time", "Reference vs current", "Embedding projection"):
        assert section in text
    assert text.count("data:image/png;base64,") >= 3
    assert not list(tmp_path.glob("*.partial"))

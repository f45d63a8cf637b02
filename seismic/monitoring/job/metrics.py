"""Drift gauges for Prometheus, from a drift report (the alerting issue schedules the job and serves them).

:func:`metric_families` turns the latest window of a report into gauge families; :func:`drift_registry`
wraps them in a ``CollectorRegistry`` (what ``prometheus_client.generate_latest`` or a push gateway takes).
Gauges describe the latest window with enough rows, so an empty last hour does not zero the dashboards;
``seismic_drift_window_insufficient`` says when the very last window had too few rows.

=========================================  =========================================================
gauge (labels)                             value
=========================================  =========================================================
seismic_drift_detected                     1 if the latest window drifted against the baseline
seismic_drift_previous_detected            1 if it drifted against the window before it
seismic_drift_window_insufficient          1 if the last window had too few rows
seismic_drift_window_rows                  rows in the latest window (before sampling)
seismic_drift_feature_score (feature)      gate effect size / its threshold (>= 1 with significance: drift)
seismic_drift_prediction_js                JS distance of the predicted-class distributions
seismic_drift_prediction_share_change      largest change of one class's share (of the predicted classes)
seismic_drift_embedding_mmd2               unbiased MMD^2 of the embeddings
seismic_drift_embedding_classifier_auc     held-out AUC of the domain classifier
seismic_drift_polarity_score               1 reference polarity, -1 reversed (when the check is informative)
seismic_drift_quality (check)              nonfinite / dead / out_of_range fraction of the rows
seismic_drift_windows (verdict)            windows of the report per verdict: drift, ok, insufficient_data
seismic_quality_*                          estimated, realised performance (monitoring/quality/gauges.py)
=========================================  =========================================================
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CollectorRegistry, GaugeMetricFamily, Metric

from seismic.monitoring.quality.gauges import performance_families


def _gauge(name: str, doc: str, value: float, labels: Mapping[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), float(value))
    return family


def metric_families(report: Mapping[str, Any]) -> list[Metric]:
    """Gauge families of the report's latest window with data (see the module docstring)."""
    windows = report["windows"]
    counts = {"drift": 0, "ok": 0, "insufficient_data": 0}
    for w in windows:
        counts["drift" if w["drifted"] else "ok" if w["status"] == "ok" else "insufficient_data"] += 1
    per_verdict = GaugeMetricFamily("seismic_drift_windows", "Windows of the last report", labels=["verdict"])
    for verdict, n in counts.items():
        per_verdict.add_metric([verdict], n)
    out: list[Metric] = [per_verdict]
    last_insufficient = bool(windows) and windows[-1]["status"] == "insufficient_data"
    out.append(_gauge("seismic_drift_window_insufficient", "Last window had too few rows", last_insufficient))
    latest = next((w for w in reversed(windows) if w["status"] == "ok"), None)
    if latest is None:
        return out
    previous = latest["window"].get("previous") or {}
    out += [
        _gauge("seismic_drift_detected", "Latest window drifted vs the baseline", latest["drifted"]),
        _gauge(
            "seismic_drift_previous_detected",
            "Latest window drifted vs the one before",
            bool(previous.get("drifted")),
        ),
        _gauge(
            "seismic_drift_window_rows",
            "Rows in the latest window",
            latest["window"].get("quality", {}).get("rows", latest["n_current"]),
        ),
    ]
    score = GaugeMetricFamily("seismic_drift_feature_score", "Gate effect / threshold", labels=["feature"])
    for f in latest["raw"]["features"]:
        test = f["tests"][f["gate"]]
        if test["effect_size"] is not None and test["threshold"]:
            score.add_metric([f["name"]], test["effect_size"] / test["threshold"])
    out.append(score)
    if latest["predictions"] is not None:
        js = latest["predictions"]["tests"]["js"]["statistic"]
        out.append(_gauge("seismic_drift_prediction_js", "JS distance of predicted classes", js or 0.0))
        share = latest["predictions"]["tests"].get("share")
        if share is not None:
            doc = "Largest change of one predicted class's share"
            out.append(_gauge("seismic_drift_prediction_share_change", doc, share["statistic"] or 0.0))
    if latest["embedding"] is not None:
        tests = latest["embedding"]["tests"]
        out.append(
            _gauge(
                "seismic_drift_embedding_mmd2", "MMD^2 of the embeddings", tests["mmd"]["statistic"] or 0.0
            )
        )
        auc = tests["classifier"]["statistic"] or 0.5
        out.append(_gauge("seismic_drift_embedding_classifier_auc", "Domain classifier AUC", auc))
    polarity = latest.get("polarity")
    if polarity is not None and polarity["informative"] and polarity["score"] is not None:
        doc = "Polarity score (1 as the reference, -1 reversed)"
        out.append(_gauge("seismic_drift_polarity_score", doc, polarity["score"]))
    quality = latest["window"].get("quality")
    if quality:
        check = GaugeMetricFamily(
            "seismic_drift_quality", "Fraction of rows failing a check", labels=["check"]
        )
        for name in ("nonfinite", "dead", "out_of_range"):
            check.add_metric([name], quality[f"{name}_fraction"])
        out.append(check)
    return out + performance_families(latest)


class _ReportCollector:
    def __init__(self, report: Mapping[str, Any]) -> None:
        self._families = metric_families(report)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def drift_registry(report: Mapping[str, Any]) -> CollectorRegistry:
    """A registry holding the report's gauges (a new one per report: no stale label sets survive)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_ReportCollector(report))
    return registry

"""Prometheus gauges of a window's ``performance`` section (:mod:`seismic.monitoring.quality.window`).

==========================================  ===========================================================
gauge (labels)                              value
==========================================  ===========================================================
seismic_quality_estimated (metric)          label-free (CBPE) accuracy / macro_f1 of the latest window
seismic_quality_estimated_band (metric,     5 % and 95 % bounds of the estimate (sampling and
  bound)                                    calibration error)
seismic_quality_estimated_drop (metric)     reference estimate minus the window's
seismic_quality_drop_threshold (kind,       the drop that alerts, learnt from the reference (kind:
  metric)                                   estimated or realised)
seismic_quality_reference (kind, metric)    the reference profile's estimated / realised metric
seismic_quality_labelled_rows               rows of the latest window whose late label has arrived
seismic_quality_realised (metric)           accuracy / macro_f1 on those rows (only when there are any)
seismic_quality_realised_drop (metric)      reference realised minus the window's
seismic_quality_realised_recall (class)     per-class recall on those rows
==========================================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

_METRICS = ("accuracy", "macro_f1")


def _per_metric(name: str, doc: str, values: Mapping[str, float], extra: Mapping[str, str] | None = None):
    labels = ["metric", *(extra or {})]
    family = GaugeMetricFamily(name, doc, labels=labels)
    for metric in _METRICS:
        if values.get(metric) is not None:
            family.add_metric([metric, *(extra or {}).values()], float(values[metric]))
    return family


def performance_families(window: Mapping[str, Any]) -> list[Metric]:
    """The gauges above for one report window (none when it has no performance section)."""
    perf = window["window"].get("performance")
    if not perf:
        return []
    est, judged = perf["estimated"], perf["judged"]
    out: list[Metric] = [
        _per_metric("seismic_quality_estimated", "Label-free (CBPE) estimate of the latest window", est),
    ]
    threshold = GaugeMetricFamily(
        "seismic_quality_drop_threshold",
        "Drop that alerts, learnt from the reference",
        labels=["kind", "metric"],
    )
    for kind, values in perf["max_drop"].items():
        for metric in _METRICS:
            threshold.add_metric([kind, metric], float(values[metric]))
    out.append(threshold)
    band = GaugeMetricFamily(
        "seismic_quality_estimated_band", "5-95 % band of the estimate", labels=["metric", "bound"]
    )
    for metric, (low, high) in (est.get("band") or {}).items():
        band.add_metric([metric, "p5"], low)
        band.add_metric([metric, "p95"], high)
    out.append(band)
    reference = GaugeMetricFamily(
        "seismic_quality_reference", "Reference profile metric", labels=["kind", "metric"]
    )
    for kind, values in perf["reference"].items():
        for metric in _METRICS:
            reference.add_metric([kind, metric], float(values[metric]))
    out.append(reference)
    if judged.get("estimated"):
        doc = "Reference estimate minus the latest window's"
        out.append(_per_metric("seismic_quality_estimated_drop", doc, judged["estimated"]["drop"]))
    labelled = GaugeMetricFamily(
        "seismic_quality_labelled_rows", "Rows of the latest window with a late label"
    )
    labelled.add_metric([], perf["labelled_rows"])
    out.append(labelled)
    realised = perf.get("realised")
    if realised:
        out.append(_per_metric("seismic_quality_realised", "Accuracy / macro-F1 on late labels", realised))
        if judged.get("realised"):
            doc = "Reference realised metric minus the latest window's"
            out.append(_per_metric("seismic_quality_realised_drop", doc, judged["realised"]["drop"]))
        recall = GaugeMetricFamily(
            "seismic_quality_realised_recall", "Per-class recall on late labels", labels=["class_name"]
        )
        for name, value in realised["recall"].items():
            recall.add_metric([name], value)
        out.append(recall)
    return out

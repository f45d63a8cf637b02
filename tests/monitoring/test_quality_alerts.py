"""Performance drops go through the drift alerts' engine: one alert per kind, deduplicated across windows,
resolved when the estimate recovers, held back by the cooldown when it flaps; text names the numbers."""

from __future__ import annotations

import datetime as dt

from seismic.monitoring.alerting.channels import build_channels

from .test_alerts import _engine, judge, window


def with_performance(k: int, estimated_drop: float, realised_drop: float | None = None) -> dict:
    """A report window without drift whose performance section shows these drops (threshold 0.05)."""
    w = window(k)
    reference = {"accuracy": 0.85, "macro_f1": 0.80}
    est = {m: reference[m] - estimated_drop for m in reference}
    judged = {
        "estimated": {
            "drop": dict.fromkeys(reference, estimated_drop),
            "dropped": dict.fromkeys(reference, estimated_drop > 0.05),
        },
        "realised": None,
    }
    realised = None
    if realised_drop is not None:
        realised = {m: reference[m] - realised_drop for m in reference}
        judged["realised"] = {
            "drop": dict.fromkeys(reference, realised_drop),
            "dropped": dict.fromkeys(reference, realised_drop > 0.05),
        }
    w["window"]["performance"] = {
        "estimated": est,
        "realised": realised,
        "labelled_rows": 0 if realised is None else 400,
        "labelled_fraction": 0.0 if realised is None else 0.8,
        "reference": {"estimated": reference, "realised": reference},
        "max_drop": {"estimated": dict.fromkeys(reference, 0.05), "realised": dict.fromkeys(reference, 0.05)},
        "judged": judged,
    }
    return w


def test_estimated_drop_fires_dedups_and_resolves(tmp_path):
    channels = build_channels([{"type": "log", "path": str(tmp_path / "alerts.jsonl")}], receiver="m")
    engine = _engine(tmp_path, repeat_interval=dt.timedelta(hours=4))
    drops = [0.2, 0.2, 0.2, 0.0]
    notes = [judge(engine, with_performance(k, d), channels)[0] for k, d in enumerate(drops)]
    assert [None if n is None else n.status for n in notes] == ["firing", None, None, "resolved"]
    (alert,) = notes[0].alerts
    assert (
        alert.labels["alertname"] == "SeismicEstimatedPerformanceDrop"
        and alert.labels["severity"] == "warning"
    )
    text = alert.annotations["description"]
    assert (
        "estimated performance dropped" in text
        and "accuracy 0.650 (reference 0.850, drop 0.200 > 0.050)" in text
    )


def test_realised_drop_is_its_own_critical_alert_and_cooldown_holds_flaps(tmp_path):
    channels = build_channels([{"type": "log", "path": str(tmp_path / "alerts.jsonl")}], receiver="m")
    engine = _engine(tmp_path, cooldown=dt.timedelta(minutes=40))
    note, _ = judge(engine, with_performance(0, 0.2, realised_drop=0.3), channels)
    names = {a.labels["alertname"]: a for a in note.alerts}
    assert set(names) == {"SeismicEstimatedPerformanceDrop", "SeismicRealisedPerformanceDrop"}
    assert names["SeismicRealisedPerformanceDrop"].labels["severity"] == "critical"
    assert "on 400 labelled rows" in names["SeismicRealisedPerformanceDrop"].annotations["description"]
    flaps = [
        0.0,
        0.2,
        0.0,
        0.2,
    ]  # resolved at 00:30, cooldown until 01:10: the flaps at 00:30-01:00 stay quiet
    statuses = [judge(engine, with_performance(k + 1, d), channels)[0] for k, d in enumerate(flaps)]
    assert [None if n is None else n.status for n in statuses] == ["resolved", None, None, "firing"]

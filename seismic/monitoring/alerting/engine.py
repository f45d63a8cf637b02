"""Alerts from drift windows: which alerts fire, which are resolved, and which of them to notify now.

One alert per family and model (labels ``alertname``, ``model``, ``env``, ``severity``, ``service``):

================================  ===============================================================
alertname                         fires when, in a window with enough rows
================================  ===============================================================
``SeismicFeatureDrift``           a raw handcrafted feature drifted (static or adaptive threshold)
``SeismicPredictionDrift``        the predicted-class distribution drifted
``SeismicEmbeddingDrift``         the embeddings drifted (MMD and/or domain classifier, per config)
``SeismicPolarityReversed``       the data are closer to the reference with reversed polarity (a sign error)
``SeismicDataQuality``            non-finite, dead or out-of-range rows above ``alerts.quality``
``SeismicEstimatedPerformanceDrop``  the label-free (CBPE) accuracy or macro-F1 fell by more than the
                                  drop learnt from the reference (:mod:`seismic.monitoring.quality`)
``SeismicRealisedPerformanceDrop``   the same on late labels, with ``quality.min_labelled`` labelled rows
================================  ===============================================================

The model version is an annotation, not a label, so a retrained model inherits the open alert and resolves
it when its traffic stops drifting (a version label would fire a fresh alert per version). The fingerprint is
a hash of the sorted labels, like Alertmanager's: the same alert keeps it across windows and restarts.

**Notification rules** (times are the window's end, i.e. data time, so a backlog processed in one go is
judged as if it had run live). Per fingerprint the state (:mod:`seismic.monitoring.state`) records the last
status notified and when:

- firing, not notified as firing yet: notify, unless within ``cooldown`` of its last resolved notice (a
  flapping alert is then held back silently and notified when the cooldown is over, if it still fires);
- firing, already notified: notify again only after ``repeat_interval`` (dedup in between);
- no longer firing in a window with enough rows: resolved (``endsAt`` = window end); notify only if the
  receiver was told it fires. A window with too few rows changes nothing.

All alerts of a window go out in one notification (grouping per window). An alert counts as notified only
when at least one channel delivered it, so an outage of every receiver is retried on the next window.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from seismic.monitoring.drift.adaptive import StatDecision
from seismic.monitoring.state import MonitorState

FAMILIES = {
    "raw": ("SeismicFeatureDrift", "warning"),
    "predictions": ("SeismicPredictionDrift", "warning"),
    "embedding": ("SeismicEmbeddingDrift", "warning"),
    "polarity": ("SeismicPolarityReversed", "critical"),
    "quality": ("SeismicDataQuality", "critical"),
    "estimated": ("SeismicEstimatedPerformanceDrop", "warning"),
    "realised": ("SeismicRealisedPerformanceDrop", "critical"),
}
FAMILIES_BY_NAME = {name: family for family, (name, _) in FAMILIES.items()}
_NAMES = {
    "predictions.js": "JS distance",
    "predictions.share": "class share change",
    "embedding.mmd": "MMD^2",
    "embedding.classifier": "domain AUC",
}
QUALITY_CHECKS = ("nonfinite", "dead", "out_of_range")
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Alertmanager sends as endsAt of a firing alert


def rfc3339(value: dt.datetime | None) -> str:
    if value is None:
        return ALERTMANAGER_ZERO_TIME
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def fingerprint(labels: Mapping[str, str]) -> str:
    text = "\x00".join(f"{k}\x00{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class AlertSettings:
    model_name: str = "seismic-facies"
    env: str = "dev"
    receiver: str = "seismic-monitor"
    external_url: str = ""  # where people find the monitor (Alertmanager's externalURL)
    repeat_interval: dt.timedelta = dt.timedelta(hours=4)
    cooldown: dt.timedelta = dt.timedelta(minutes=30)
    quality: Mapping[str, float] = field(
        default_factory=lambda: {"nonfinite": 0.001, "dead": 0.05, "out_of_range": 0.25}
    )
    max_items: int = 5  # features listed per alert (the report has all of them)


@dataclass
class Alert:
    labels: dict[str, str]
    annotations: dict[str, str]
    status: str
    starts_at: dt.datetime
    ends_at: dt.datetime | None
    fingerprint: str
    generator_url: str


@dataclass
class Notification:
    """The alerts of one window that are to be sent now, with what every channel needs to render them."""

    group_labels: dict[str, str]
    window: dict[str, Any]
    alerts: list[Alert]
    model: dict[str, Any]
    report: str | None
    settings: AlertSettings

    @property
    def status(self) -> str:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def group_key(self) -> str:
        inner = ", ".join(f'{k}="{v}"' for k, v in sorted(self.group_labels.items()))
        return "{}:{" + inner + "}"

    def title(self) -> str:
        firing = sum(a.status == "firing" for a in self.alerts)
        count = firing if firing else len(self.alerts)
        verdict = "drift" if firing else "drift cleared"
        return (
            f"[{self.status.upper()}:{count}] {self.settings.model_name} ({self.settings.env}): {verdict} "
            f"in window {self.window.get('id')}"
        )

    def text(self) -> str:
        """Plain text: what drifted, how much, since when, which model version, where the report is."""
        version = self.model.get("version") or "?"
        lines = [self.title(), f"model: {self.settings.model_name} version {version}"]
        lines.append(f"window: {self.window.get('start', '?')} .. {self.window.get('end', '?')}")
        for a in self.alerts:
            when = f"since {rfc3339(a.starts_at)}"
            if a.status == "resolved":
                when += f", resolved {rfc3339(a.ends_at)}"
            what = f"{a.labels['alertname']}: {a.annotations['description']}"
            lines.append(f"- {a.status.upper()} {what} ({when})")
        lines.append(f"report: {self.report or 'not written'}")
        return "\n".join(lines)


def _feature_text(decisions: list[StatDecision], limit: int) -> str:
    hits = sorted((d for d in decisions if d.drifted), key=lambda d: (-d.ratio, d.name))
    parts = [f"{d.name.split('.', 1)[1]} {d.value_text()}" for d in hits[:limit]]
    more = f" and {len(hits) - limit} more" if len(hits) > limit else ""
    return f"{len(hits)} raw feature(s) drifted: " + ", ".join(parts) + more


def _named(d: StatDecision) -> str:
    return f"{_NAMES.get(d.name, d.name)} {d.value_text()}"


def _quality_hits(window: Mapping[str, Any], limits: Mapping[str, float]) -> list[str]:
    quality = window["window"].get("quality") or {}
    hits = []
    for check in QUALITY_CHECKS:
        value = quality.get(f"{check}_fraction")
        if value is not None and value > limits.get(check, 1.0):
            hits.append(f"{check} rows {value:.1%} (limit {limits[check]:.1%})")
    return hits


def describe(window: Mapping[str, Any], decisions: Mapping[str, StatDecision], s: AlertSettings):
    """``{family: description}`` of the families that fire in this window (empty: nothing fires)."""
    by_family: dict[str, list[StatDecision]] = {}
    for d in decisions.values():
        by_family.setdefault(d.family, []).append(d)
    out: dict[str, str] = {}
    raw = by_family.get("raw", [])
    if any(d.drifted for d in raw):
        out["raw"] = _feature_text(raw, s.max_items)
    pred = [d for d in by_family.get("predictions", []) if d.drifted]
    if pred:
        out["predictions"] = "predicted classes drifted: " + ", ".join(_named(d) for d in pred)
    emb = by_family.get("embedding", [])
    combine = window.get("embedding", {}) and window["embedding"].get("combine", "any")
    hit = [d for d in emb if d.drifted]
    if emb and (len(hit) == len(emb) if combine == "all" else hit):
        out["embedding"] = "embeddings drifted: " + ", ".join(_named(d) for d in hit)
    polarity = window.get("polarity")
    if polarity and polarity["drifted"]:
        out["polarity"] = (
            f"polarity reversed: score {polarity['score']:.2f} (1 as the reference, -1 reversed;"
            f" threshold {polarity['threshold']:.2f})"
        )
    quality = _quality_hits(window, s.quality)
    if quality:
        out["quality"] = "data quality: " + ", ".join(quality)
    out.update(_performance_hits(window))
    return out


def _performance_hits(window: Mapping[str, Any]) -> dict[str, str]:
    """The estimated / realised metrics that fell beyond the threshold learnt from the reference."""
    perf = window["window"].get("performance") or {}
    out = {}
    for kind in ("estimated", "realised"):
        judged = (perf.get("judged") or {}).get(kind)
        if not judged or not any(judged["dropped"].values()):
            continue
        parts = [
            f"{m} {perf[kind][m]:.3f} (reference {perf['reference'][kind][m]:.3f}, "
            f"drop {judged['drop'][m]:.3f} > {perf['max_drop'][kind][m]:.3f})"
            for m, hit in judged["dropped"].items()
            if hit
        ]
        rows = f" on {perf['labelled_rows']} labelled rows" if kind == "realised" else ""
        out[kind] = f"{kind} performance dropped{rows}: " + ", ".join(parts)
    return out


class AlertEngine:
    """Decides, window by window, what to notify; the state lives in a :class:`MonitorState`."""

    def __init__(self, settings: AlertSettings, state: MonitorState) -> None:
        self.s = settings
        self.state = state

    def _labels(self, family: str) -> dict[str, str]:
        name, severity = FAMILIES[family]
        return {
            "alertname": name,
            "model": self.s.model_name,
            "env": self.s.env,
            "severity": severity,
            "service": "seismic-monitor",
        }

    def evaluate(
        self,
        window: Mapping[str, Any],
        decisions: Mapping[str, StatDecision],
        *,
        model: Mapping[str, Any],
        report: str | None,
    ) -> Notification | None:
        """Update the alert state with this window (a report's window entry); the notification to send."""
        if window["status"] != "ok":
            return None  # too few rows: neither fire nor resolve
        info = window["window"]
        start = dt.datetime.fromisoformat(info["start"]) if "start" in info else None
        now = dt.datetime.fromisoformat(info["end"]) if "end" in info else dt.datetime.now(dt.UTC)
        firing = describe(window, decisions, self.s)
        alerts_state = self.state.data["alerts"]
        send: list[Alert] = []
        for family, description in firing.items():
            labels = self._labels(family)
            fp = fingerprint(labels)
            st = alerts_state.get(fp)
            if st is None or st["status"] == "resolved":
                st = alerts_state[fp] = {
                    **(st or {}),
                    "labels": labels,
                    "status": "firing",
                    "starts_at": (start or now).isoformat(),
                    "ends_at": None,
                }
            st["description"] = description
            if self._due_firing(st, now):
                send.append(self._alert(st, fp, model, report, info))
        for fp, st in alerts_state.items():
            if st["status"] == "firing" and FAMILIES_BY_NAME[st["labels"]["alertname"]] not in firing:
                st["status"], st["ends_at"] = "resolved", now.isoformat()
            if st["status"] == "resolved" and st.get("last_status_sent") == "firing":
                send.append(self._alert(st, fp, model, report, info))
        if not send:
            return None
        return Notification(
            {"model": self.s.model_name, "env": self.s.env}, dict(info), send, dict(model), report, self.s
        )

    def _due_firing(self, st: Mapping[str, Any], now: dt.datetime) -> bool:
        if st.get("last_status_sent") == "firing":
            return now - dt.datetime.fromisoformat(st["last_sent"]) >= self.s.repeat_interval
        until = st.get("cooldown_until")
        return until is None or now >= dt.datetime.fromisoformat(until)

    def _alert(
        self, st: Mapping[str, Any], fp: str, model: Mapping[str, Any], report: str | None, info: Mapping
    ) -> Alert:
        resolved = st["status"] == "resolved"
        annotations = {
            "summary": f"{st['labels']['alertname']} on {self.s.model_name} ({self.s.env})",
            "description": "drift cleared" if resolved else st["description"],
            "window": str(info.get("id")),
            "model_version": str(model.get("version") or "?"),
            "report": report or "",
        }
        return Alert(
            labels=dict(st["labels"]),
            annotations=annotations,
            status=st["status"],
            starts_at=dt.datetime.fromisoformat(st["starts_at"]),
            ends_at=dt.datetime.fromisoformat(st["ends_at"]) if resolved else None,
            fingerprint=fp,
            generator_url=self.s.external_url or (report or ""),
        )

    def delivered(self, notification: Notification, sent_at: dt.datetime) -> None:
        """Record that at least one channel delivered ``notification`` (data time ``sent_at``)."""
        for a in notification.alerts:
            st = self.state.data["alerts"][a.fingerprint]
            st["last_status_sent"], st["last_sent"] = a.status, sent_at.isoformat()
            if a.status == "resolved":
                st["cooldown_until"] = (sent_at + self.s.cooldown).isoformat()

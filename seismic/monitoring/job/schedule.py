"""Scheduled monitoring: every complete window of the inference log once, alerts, adaptive thresholds, the
retrain trigger and a ``/metrics`` endpoint (``python scripts/monitor.py schedule.every=15m``).

**Windows** are aligned to multiples of ``every`` since the Unix epoch (15 min windows start at :00, :15,
...), so every run, restart or CronJob agrees on them. A window ``[start, end)`` is complete once
``now >= end + delay`` (``delay`` leaves the server time to flush its inference log). Each cycle processes
the complete windows after the state's ``last_window_end``, in time order; a first run (no state) starts
``backfill`` windows back. After each window the state (window marker, alert state, learned thresholds,
retrain streak) is written atomically in one file (:mod:`seismic.monitoring.state`): a restart neither skips
nor repeats a window. A window without rows is recorded as ``no_data`` and changes no alert.

**Per window**: the drift job on that window against the reference profile (not against the window before:
that needs the previous window's rows, which the range mode of ``scripts/monitor.py`` holds in memory and a
restarted monitor would not have), JSON + HTML reports under ``output_dir/windows/<start>/``, the
statistics' thresholds (static or adaptive, :mod:`seismic.monitoring.drift.adaptive`), alerts
(:mod:`seismic.monitoring.alerting.engine`) sent to every channel
(:mod:`seismic.monitoring.alerting.channels`), the retrain policy (:mod:`seismic.monitoring.job.retrain`).

**The model**: a model folder, or ``models:/NAME@ALIAS`` followed like the server follows it: when the
alias moves, the new version's reference profile is downloaded and used from the next window on (the
registry code, and with it mlflow, is imported only for such sources).

**Metrics** (``metrics.port``; 0 = none; ``metrics.pushgateway``: pushed after each ``schedule.once`` run,
which has no endpoint to scrape): the drift gauges of the latest window
(:mod:`seismic.monitoring.job.metrics`) plus ``seismic_monitor_last_run_timestamp_seconds``,
``seismic_monitor_last_window_end_timestamp_seconds``, ``seismic_monitor_windows_processed_total``,
``seismic_monitor_alerts_sent_total{channel}``, ``seismic_monitor_alert_failures_total{channel}``,
``seismic_monitor_active_alerts{alertname}``, ``seismic_monitor_retrain_decisions_total{decision}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, Metric

from seismic.io.atomic import remove_partials
from seismic.monitoring.alerting.channels import RetryPolicy, build_channels, dispatch
from seismic.monitoring.alerting.engine import AlertEngine, AlertSettings, describe
from seismic.monitoring.drift import adaptive
from seismic.monitoring.drift.config import DriftConfig
from seismic.monitoring.job.metrics import metric_families
from seismic.monitoring.job.retrain import RetrainConfig, RetrainTrigger
from seismic.monitoring.job.run import (
    JobSettings,
    MonitoringError,
    Reference,
    load_reference,
    parse_granularity,
    run_monitoring,
    write_reports,
)
from seismic.monitoring.quality.window import QualitySettings
from seismic.monitoring.reports.json_report import read_json_report
from seismic.monitoring.state import MonitorState

log = logging.getLogger(__name__)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_NO_DATA = re.compile(r"has no rows between|does not exist")  # MonitoringError's texts for an empty window


def duration(value: str | int | float | dt.timedelta) -> dt.timedelta:
    """``15min``, ``1h``, ``30s`` (or seconds as a number) -> a timedelta."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.timedelta(seconds=float(value))
    parsed = parse_granularity(str(value))
    if not isinstance(parsed, dt.timedelta):
        raise ValueError(f"expected a duration like 30s, 15min or 1h, got {value!r}")
    return parsed


@dataclass(frozen=True)
class ScheduleSettings:
    model_source: str
    log_dir: str
    output_dir: str
    state_file: str
    every: dt.timedelta
    delay: dt.timedelta = dt.timedelta(seconds=30)
    backfill: int = 1
    poll: dt.timedelta | None = None  # how often to look for complete windows (default: every / 10, 1-60 s)
    max_rows_per_window: int = 20_000
    quality: QualitySettings = field(default_factory=QualitySettings)
    tracking_uri: str | None = None
    drift: DriftConfig = field(default_factory=DriftConfig)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    channels: list[Mapping[str, Any]] = field(default_factory=list)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    adaptive: adaptive.AdaptiveConfig = field(default_factory=adaptive.AdaptiveConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    pushgateway: str | None = None  # a CronJob run has no /metrics to scrape: it pushes them here
    push_job: str = "seismic-monitor"

    @property
    def poll_seconds(self) -> float:
        if self.poll is not None:
            return self.poll.total_seconds()
        return min(60.0, max(1.0, self.every.total_seconds() / 10))


def floor_time(value: dt.datetime, every: dt.timedelta) -> dt.datetime:
    return _EPOCH + ((value - _EPOCH) // every) * every


def pending_windows(
    last_end: dt.datetime | None, now: dt.datetime, s: ScheduleSettings
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Complete windows after ``last_end`` (first run: the last ``backfill`` complete ones), oldest first."""
    limit = floor_time(now - s.delay, s.every)  # the end of the newest complete window
    start = last_end if last_end is not None else limit - s.backfill * s.every
    while start + s.every <= limit:
        yield start, start + s.every
        start += s.every


def _registry_version(source: str, tracking_uri: str | None) -> tuple[Any, str, str]:
    """``(client, name, version)`` that a ``models:/`` source points at now (one registry call)."""
    from seismic.registry.store import connect, version_by_alias
    from serving.runtime import parse_registry_uri  # the server's URI rules

    name, alias, version = parse_registry_uri(source)
    client = connect(tracking_uri, must_exist=True)
    if alias is not None:
        held = version_by_alias(client, name, alias)
        if held is None:
            raise MonitoringError(f"{source}: no version holds alias {alias!r}")
        version = held.version
    return client, name, str(version)


class Monitor:
    def __init__(self, settings: ScheduleSettings, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.s = settings
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.state = MonitorState.load(settings.state_file, lock=True)  # one monitor per state file
        self.engine = AlertEngine(settings.alerts, self.state)
        self.channels = build_channels(settings.channels, settings.alerts.receiver)
        self.retrain = RetrainTrigger(
            settings.retrain, self.state, env=settings.alerts.env, model_name=settings.alerts.model_name
        )
        self.reference: Reference | None = None
        self.model: dict[str, Any] = {}
        # /metrics after a restart shows the last report written, not nothing until the next window
        last = next((w["report"] for w in reversed(self.state.data["windows"]) if w.get("report")), None)
        self.latest_report = read_json_report(last) if last and Path(last).is_file() else None
        self.last_run: float | None = None
        self._cache = Path(settings.output_dir) / "models"

    def load_model(self) -> None:
        """(Re)load the reference profile when the source now points at another version."""
        source = self.s.model_source
        if not source.startswith("models:/"):
            if self.reference is None:
                meta_file = Path(source) / "metadata.json"
                meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
                self.reference = load_reference(source, self.s.drift, self.s.quality)
                self.model = {"name": meta.get("model_name"), "version": meta.get("model_version")}
            return
        client, name, version = _registry_version(source, self.s.tracking_uri)
        if self.reference is not None and version == self.model.get("version"):
            return
        from seismic.registry.store import download

        self._cache.mkdir(parents=True, exist_ok=True)
        folder = download(
            client, name, version, tempfile.mkdtemp(prefix=f"{name}-v{version}-", dir=self._cache)
        )
        self.reference = load_reference(folder, self.s.drift, self.s.quality)
        if self.model:
            log.warning("monitor: %s moved from version %s to %s", source, self.model.get("version"), version)
        self.model = {"name": name, "version": version}

    def run_once(self, stop: threading.Event | None = None) -> list[dict[str, Any]]:
        """Process every complete window not done yet; the window records."""
        done = []
        now = self.clock()
        for start, end in pending_windows(self.state.last_window_end, now, self.s):
            if stop is not None and stop.is_set():
                break
            self.load_model()
            done.append(self.process(start, end))
        self.last_run = time.time()
        return done

    def process(self, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        settings = JobSettings(
            self.s.log_dir,
            start,
            end,
            granularity=f"{int(self.s.every.total_seconds())}s",
            max_rows_per_window=self.s.max_rows_per_window,
            compare_previous=False,  # one window per run: see the module docstring
            seed=self.s.drift.seed,
            quality=self.s.quality,
        )
        record = {"id": start.isoformat(), "start": start.isoformat(), "end": end.isoformat()}
        try:
            report = run_monitoring(settings, self.reference)
        except MonitoringError as err:
            if not _NO_DATA.search(str(err)):
                raise  # an unreadable log is an outage to retry, not an empty window to skip
            log.info("monitor: window %s: %s", record["id"], err)
            record |= {"verdict": "no_data", "report": None}
        else:
            folder = Path(self.s.output_dir) / "windows" / f"{start:%Y%m%dT%H%M%SZ}"
            # a monitor killed while writing this window's reports left partial files; the state lock
            # makes them ours to remove
            remove_partials([folder / "drift_report.json", folder / "drift_report.html"])
            json_path, html_path = write_reports(report, folder)
            self.latest_report = report
            record |= self._judge(report["windows"][-1], str(html_path))
            record["report"] = str(json_path)
        record["processed_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        self.state.window_done(record)
        self.state.save()
        log.info("monitor: window %s: %s", record["id"], record["verdict"])
        return record

    def _judge(self, window: Mapping[str, Any], report: str) -> dict[str, Any]:
        if (
            window["status"] != "ok"
        ):  # too few rows: no alert changes, the retrain streak neither grows nor breaks
            return {"verdict": "insufficient_data"}
        history = self.state.data["adaptive"]
        decisions = adaptive.decide(window, history, self.s.adaptive, self.s.drift.alpha)
        families = sorted(describe(window, decisions, self.s.alerts))
        notification = self.engine.evaluate(window, decisions, model=self.model, report=report)
        sent: dict[str, bool] = {}
        if notification is not None:
            sent = dispatch(self.channels, notification, self.s.retry)
            for channel, ok in sent.items():
                self.state.count("alerts_sent" if ok else "alert_failures", channel)
            if any(sent.values()):
                self.engine.delivered(notification, dt.datetime.fromisoformat(window["window"]["end"]))
        if not families:
            adaptive.learn(history, decisions, self.s.adaptive)
        decision = self.retrain.decide(window, families)
        if decision is not None:
            self.state.count("retrain_decisions", decision["decision"])
        return {
            "verdict": "drift" if families else "ok",
            "families": families,
            "notified": sent,
            "retrain": None if decision is None else decision["decision"],
        }

    def run_forever(self, stop: threading.Event) -> None:
        """Cycles until ``stop`` is set (SIGTERM in the script); a failed cycle is logged and retried."""
        while not stop.is_set():
            try:
                self.run_once(stop)
            except (RuntimeError, OSError) as err:  # an outage (registry, disk): one line, then retried
                why = " ".join(str(err).split())
                log.error("monitor: cycle failed: %s; retried in %.0f s", why, self.s.poll_seconds)
            except Exception:  # a long-lived daemon: not even a bug ends it, but its traceback is logged
                log.exception("monitor: cycle failed; retried in %.0f s", self.s.poll_seconds)
            stop.wait(self.s.poll_seconds)
        self.retrain.stop()

    # ---- /metrics
    def collect(self) -> Iterator[Metric]:
        if self.latest_report is not None:
            yield from metric_families(self.latest_report)
        data = self.state.data
        yield _gauge(
            "seismic_monitor_last_run_timestamp_seconds", "Last monitoring cycle", self.last_run or 0
        )
        end = self.state.last_window_end
        yield _gauge(
            "seismic_monitor_last_window_end_timestamp_seconds",
            "End of the last window processed",
            end.timestamp() if end else 0,
        )
        windows = CounterMetricFamily("seismic_monitor_windows_processed", "Windows processed")
        windows.add_metric([], data["counters"]["windows"])
        yield windows
        for key, doc in (("alerts_sent", "Notifications delivered"), ("alert_failures", "Failed deliveries")):
            family = CounterMetricFamily(f"seismic_monitor_{key}", doc, labels=["channel"])
            for channel in self.channels:
                family.add_metric([channel.name], data["counters"].get(key, {}).get(channel.name, 0))
            yield family
        active = GaugeMetricFamily("seismic_monitor_active_alerts", "Alerts firing", labels=["alertname"])
        for st in data["alerts"].values():
            active.add_metric([st["labels"]["alertname"]], float(st["status"] == "firing"))
        yield active
        retrains = CounterMetricFamily(
            "seismic_monitor_retrain_decisions", "Retrain policy decisions", labels=["decision"]
        )
        for decision, n in sorted(data["counters"].get("retrain_decisions", {}).items()):
            retrains.add_metric([decision], n)
        yield retrains

    def push_metrics(self) -> bool:
        """Push the gauges and counters to ``pushgateway`` (replacing this job's previous push). False, with
        one log line naming the gateway, when it cannot be reached: reports and state are written anyway."""
        if not self.s.pushgateway:
            return False
        from prometheus_client import push_to_gateway

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        try:
            push_to_gateway(self.s.pushgateway, job=self.s.push_job, registry=registry, timeout=10)
        except OSError as err:  # URLError, refused, timeout
            log.error("monitor: cannot push metrics to the Pushgateway %s: %s", self.s.pushgateway, err)
            return False
        return True

    def serve_metrics(self) -> Any | None:
        """Start the ``/metrics`` HTTP server in a thread (``metrics.port`` 0: none); the server or None."""
        if not self.s.metrics_port:
            return None
        from prometheus_client import start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        server, _ = start_http_server(self.s.metrics_port, self.s.metrics_host, registry=registry)
        log.warning("monitor: metrics on http://%s:%d/metrics", self.s.metrics_host, server.server_port)
        return server


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], float(value))
    return family


def settings_from_config(cfg: Any) -> ScheduleSettings:
    """ScheduleSettings from the composed ``configs/monitor.yaml`` (an OmegaConf config; see that file).

    Only what the monitor reads is resolved: a folder source needs no tracking URI, which in staging and prod
    is an environment variable that a monitoring host need not have."""
    from omegaconf import OmegaConf

    def plain(key: str) -> dict[str, Any]:
        return OmegaConf.to_container(cfg[key], resolve=True)

    sched, alerts, retrain = plain("schedule"), plain("alerts"), plain("retrain")
    alert_settings = AlertSettings(
        model_name=str(cfg.registry.model_name),
        env=str(cfg.env.name),
        receiver=str(alerts["receiver"]),
        external_url=str(alerts.get("external_url") or ""),
        repeat_interval=duration(alerts["repeat_interval"]),
        cooldown=duration(alerts["cooldown"]),
        quality=dict(alerts["quality"]),
        max_items=int(alerts["max_items"]),
    )
    retrain_cfg = RetrainConfig(
        **{k: v for k, v in retrain.items() if k not in ("cooldown", "commands", "data", "webhook")},
        cooldown=duration(retrain["cooldown"]),
        commands=tuple(tuple(str(a) for a in c) for c in retrain["commands"]),
        data=tuple(str(d) for d in retrain.get("data") or ()),
        webhook=dict(retrain.get("webhook") or {}),
    )
    source = str(cfg.model_dir)
    return ScheduleSettings(
        model_source=source,
        log_dir=str(cfg.log_dir),
        output_dir=str(cfg.workdir),
        state_file=str(cfg.state_file),
        every=duration(sched["every"]),
        delay=duration(sched["delay"]),
        backfill=int(sched["backfill"]),
        poll=None if sched.get("poll") is None else duration(sched["poll"]),
        max_rows_per_window=int(cfg.max_rows_per_window),
        quality=QualitySettings(**plain("quality")),
        tracking_uri=str(cfg.registry.tracking_uri) if source.startswith("models:/") else None,
        drift=DriftConfig.from_mapping(plain("drift")),
        alerts=alert_settings,
        channels=list(alerts.get("channels") or []),
        retry=RetryPolicy(**alerts["retry"]),
        adaptive=adaptive.AdaptiveConfig.from_mapping(plain("adaptive")),
        retrain=retrain_cfg,
        metrics_host=str(cfg.metrics.host),
        metrics_port=int(cfg.metrics.port),
        pushgateway=str(cfg.metrics.pushgateway) if cfg.metrics.get("pushgateway") else None,
        push_job=str(cfg.metrics.get("push_job") or "seismic-monitor"),
    )

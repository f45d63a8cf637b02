"""The drift monitoring job: ``python scripts/monitor.py model_dir=FOLDER log_dir=FOLDER [start=.. end=..]``.

Writes ``drift_report.json`` and ``drift_report.html`` into ``output_dir`` and prints the summary (verdict,
windows drifted) as JSON. Exit status: 0 reports written (whatever the verdict: alerting reads the gauges),
2 error (one line on stderr: no reference profile, an unreadable or empty log, a bad setting). See
configs/monitor.yaml.

Scheduled mode, ``schedule.every=15m`` (seismic/monitoring/job/schedule.py): runs until SIGTERM or Ctrl-C,
processing each complete window once, with alerts, adaptive thresholds, the retrain trigger and /metrics;
``schedule.once=true`` processes the pending windows and exits (cron, a Kubernetes CronJob), printing the
window records as JSON. Exit status 0, or 2 with one line on stderr for a bad setting or no usable model.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import sys
import threading

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault(
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"
)  # a models:/ download draws a bar per file

import hydra
from omegaconf import DictConfig, OmegaConf

import seismic.config  # noqa: F401  (registers the `seismic.root` resolver the paths group uses)


def scheduled(cfg: DictConfig) -> None:
    from seismic.monitoring.job.schedule import Monitor, settings_from_config

    root = logging.getLogger()
    root.setLevel(str(cfg.env.log_level).upper())
    for handler in root.handlers:  # Hydra logs to stdout; here stdout carries the JSON of schedule.once
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)
    try:
        monitor = Monitor(settings_from_config(cfg))
        if cfg.schedule.once:
            print(json.dumps(monitor.run_once(), indent=2))
            monitor.push_metrics()
            monitor.retrain.stop(grace_s=None)  # a CronJob run lives until its retrain has finished
            return
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        server = monitor.serve_metrics()
        logging.getLogger("seismic.monitoring").warning(
            "monitor: every %s on %s, state %s", cfg.schedule.every, cfg.log_dir, cfg.state_file
        )
        monitor.run_forever(stop)
        if server is not None:
            server.shutdown()
        logging.getLogger("seismic.monitoring").warning("monitor: stopped")
    except (RuntimeError, ValueError, OSError) as err:  # RuntimeError: MonitoringError, registry errors
        print(f"monitor failed: {err}", file=sys.stderr)
        sys.exit(2)


@hydra.main(version_base="1.3", config_path="../configs", config_name="monitor")
def main(cfg: DictConfig) -> None:
    if cfg.schedule.every:
        scheduled(cfg)
        return
    from seismic.monitoring.drift.config import DriftConfig
    from seismic.monitoring.job.run import (
        JobSettings,
        MonitoringError,
        as_utc,
        load_reference,
        parse_granularity,
        run_monitoring,
        write_reports,
    )
    from seismic.monitoring.quality.window import QualitySettings

    try:
        drift = DriftConfig.from_mapping(OmegaConf.to_container(cfg.drift, resolve=True))
        end = as_utc(cfg.end) if cfg.end else default_end(dt.datetime.now(dt.UTC))
        lookback = parse_granularity(cfg.lookback)
        if not isinstance(lookback, dt.timedelta):
            raise ValueError(f"lookback must be a duration like 24h, got {cfg.lookback!r}")
        start = as_utc(cfg.start) if cfg.start else end - lookback
        settings = JobSettings(
            log_dir=cfg.log_dir,
            start=start,
            end=end,
            granularity=cfg.granularity,
            max_rows_per_window=cfg.max_rows_per_window,
            compare_previous=cfg.compare_previous,
            seed=drift.seed,
            quality=QualitySettings(**OmegaConf.to_container(cfg.quality, resolve=True)),
        )
        report = run_monitoring(settings, load_reference(cfg.model_dir, drift, settings.quality))
        paths = write_reports(report, cfg.output_dir)
    except (MonitoringError, ValueError, OSError) as err:
        print(f"monitor failed: {err}", file=sys.stderr)
        sys.exit(2)
    summary = {
        **report["summary"],
        "range": {"start": report["meta"]["start"], "end": report["meta"]["end"]},
        "min_rows": drift.min_rows,
        "windows": [
            window_line(w) for w in report["windows"] if w["n_current"] or w["window"]["quality"]["rows"]
        ],
        "quality_problems": quality_problems(report["windows"], cfg.alerts.quality),
        "performance": report["meta"]["performance"],
    }
    print(json.dumps({**summary, "reports": [str(p) for p in paths]}, indent=2))


def default_end(now: dt.datetime) -> dt.datetime:
    """The next full hour: rounding down would leave the newest traffic (this hour's) out of the range."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    return hour if hour == now else hour + dt.timedelta(hours=1)


def window_line(w: dict) -> dict:
    """A window as the printed summary shows it: rows seen, verdict and what drifted."""
    drifted = [f for f in ("raw", "predictions", "embedding", "polarity") if (w.get(f) or {}).get("drifted")]
    return {
        "window": w["window"].get("id"),
        "rows": w["window"]["quality"]["rows"],
        "rows_tested": w["rows"],
        "status": w["status"],
        "drifted": drifted,
        "drifted_features": w["raw"]["drifted_features"][:5],
        "insufficient_families": w["insufficient_families"],
    }


def quality_problems(windows: list[dict], limits: DictConfig) -> list[str]:
    """Data-quality fractions above the alert limits (configs/monitor.yaml alerts.quality), one line each."""
    out = []
    for w in windows:
        q = w["window"]["quality"]
        for key in ("nonfinite", "dead", "out_of_range"):
            value = q.get(f"{key}_fraction", 0.0)
            if value > float(limits[key]):
                worst = sorted(q.get("out_of_range_features", {}).items(), key=lambda kv: -kv[1])[:3]
                where = (
                    f" (features: {', '.join(f'{n} {v:.2f}' for n, v in worst)})"
                    if key == "out_of_range"
                    else ""
                )
                out.append(
                    f"window {w['window'].get('id')}: {key}_fraction {value:.3f} > {float(limits[key])} of "
                    f"{q['feature_rows']} rows with features{where}"
                )
    return out


if __name__ == "__main__":
    main()

"""The drift monitoring job: ``python scripts/monitor.py model_dir=FOLDER log_dir=FOLDER [start=.. end=..]``.

Writes ``drift_report.json`` and ``drift_report.html`` into ``output_dir`` and prints the summary (verdict,
windows drifted) as JSON. Exit status: 0 reports written (whatever the verdict: alerting reads the gauges),
2 error (one line on stderr: no reference profile, an unreadable or empty log, a bad setting). See
configs/monitor.yaml.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

import seismic.config  # noqa: F401  (registers the `seismic.root` resolver the paths group uses)


@hydra.main(version_base="1.3", config_path="../configs", config_name="monitor")
def main(cfg: DictConfig) -> None:
    from seismic.monitoring.config import DriftConfig
    from seismic.monitoring.job import (
        JobSettings,
        MonitoringError,
        as_utc,
        load_reference,
        parse_granularity,
        run_monitoring,
        write_reports,
    )

    try:
        drift = DriftConfig.from_mapping(OmegaConf.to_container(cfg.drift, resolve=True))
        end = (
            as_utc(cfg.end) if cfg.end else dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        )
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
        )
        report = run_monitoring(settings, load_reference(cfg.model_dir, drift))
        paths = write_reports(report, cfg.output_dir)
    except (MonitoringError, ValueError, OSError) as err:
        print(f"monitor failed: {err}", file=sys.stderr)
        sys.exit(2)
    print(json.dumps({**report["summary"], "reports": [str(p) for p in paths]}, indent=2))


if __name__ == "__main__":
    main()

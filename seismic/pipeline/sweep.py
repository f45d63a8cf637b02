"""A Hydra callback that closes every sweep with its best trial: printed, saved as JSON, logged to MLflow.

Works for the basic launcher (grids) and the Optuna sweeper alike, since both report each job's return value
(the optimised metric) through ``on_job_end``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class SweepSummary(Callback):
    def __init__(self, direction: str = "maximize") -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"SweepSummary.direction must be 'maximize' or 'minimize', got {direction!r}")
        self.direction = direction
        self.trials: list[dict[str, Any]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if ok else None
        self.trials.append(
            {
                "job": len(self.trials),
                "overrides": list(job_return.overrides or []),
                "value": float(value) if isinstance(value, int | float) and math.isfinite(value) else None,
                "status": "completed" if ok else f"failed: {job_return._return_value!r}"[:300],
            }
        )

    def best(self) -> dict[str, Any] | None:
        scored = [t for t in self.trials if t["value"] is not None]
        if not scored:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(scored, key=lambda t: t["value"])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.trials:
            return
        best = self.best()
        metric = OmegaConf.select(config, "optimized_metric", default="value")
        summary = {"metric": metric, "direction": self.direction, "best": best, "trials": self.trials}
        sweep_dir = Path(OmegaConf.select(config, "hydra.sweep.dir", default="."))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "sweep_summary.json").write_text(json.dumps(summary, indent=2))
        shared = set.intersection(*(set(t["overrides"]) for t in self.trials))
        header = f"sweep of {len(self.trials)} trials, {metric} ({self.direction})"
        lines = [f"{header}; shared: {' '.join(sorted(shared))}"]
        for t in self.trials:
            score = f"{t['value']:.4f}" if t["value"] is not None else t["status"]
            varying = " ".join(o for o in t["overrides"] if o not in shared)
            lines.append(f" {'*' if t is best else ' '} {score:>8}  {varying}")
        print("\n".join(lines))
        if best is not None:
            chosen = " ".join(o for o in best["overrides"] if o not in shared)
            print(f"best: {metric}={best['value']:.4f} with {chosen}")
            self._log_to_mlflow(config, summary, sweep_dir)

    def _log_to_mlflow(self, config: DictConfig, summary: dict[str, Any], sweep_dir: Path) -> None:
        uri = OmegaConf.select(config, "env.tracking_uri", default=None)
        if not uri or OmegaConf.select(config, "logger.mlflow", default=None) is None:
            return
        try:
            import mlflow

            client = mlflow.MlflowClient(tracking_uri=uri)
            name = OmegaConf.select(config, "logger.mlflow.experiment_name", default="seismic-train")
            experiment = client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
            run = client.create_run(
                experiment_id,
                run_name=f"sweep-summary-{sweep_dir.name}",
                tags={"sweep": str(sweep_dir), "sweep_summary": "true"},
            )
            best = summary["best"]
            for override in best["overrides"]:
                key, _, value = override.partition("=")
                client.log_param(run.info.run_id, f"best.{key.lstrip('+~')}", value[:6000])
            client.log_metric(run.info.run_id, f"best_{summary['metric'].replace('/', '_')}", best["value"])
            client.log_dict(run.info.run_id, summary, "sweep_summary.json")
            client.set_terminated(run.info.run_id)
        except Exception as err:  # a summary must never turn a finished sweep into a failure
            log.warning("could not log the sweep summary to MLflow at %s: %s", uri, err)

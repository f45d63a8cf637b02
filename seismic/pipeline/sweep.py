"""A Hydra callback that closes every sweep with its best trial: printed, saved as JSON, logged to MLflow.

Works for the basic launcher (grids), the Optuna sweeper and launchers that run trials in other processes
(submitit on SLURM or locally): ``on_job_end`` runs wherever the trial ran, so it writes the trial's record
(``TRIAL_FILE``) into the trial's output folder, and ``on_multirun_end`` gathers those files from the sweep
folder instead of trusting its own memory, which only an in-process launcher fills.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

TRIAL_FILE = "sweep_trial.json"


def sweep_tags() -> dict[str, str]:
    """The sweep a trial belongs to, as MLflow tags; empty outside a Hydra multirun."""
    if not HydraConfig.initialized():
        return {}
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return {}
    return {
        "sweep": str(hc.sweep.dir),
        "sweep_job": str(hc.job.num),
        "sweep_overrides": " ".join(hc.overrides.task),
    }


class SweepSummary(Callback):
    def __init__(self, direction: str = "maximize") -> None:
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"SweepSummary.direction must be 'maximize' or 'minimize', got {direction!r}")
        self.direction = direction
        self.trials: list[dict[str, Any]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        ok = job_return.status == JobStatus.COMPLETED
        value = job_return.return_value if ok else None
        hydra_cfg = job_return.hydra_cfg or OmegaConf.create({})
        num = OmegaConf.select(hydra_cfg, "hydra.job.num", default=None)
        # the job's own folder (working_dir is the start directory unless hydra.job.chdir)
        output_dir = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir", default=None)
        trial = {
            "job": int(num) if num is not None else len(self.trials),
            "overrides": list(job_return.overrides or []),
            "value": float(value) if isinstance(value, int | float) and math.isfinite(value) else None,
            "status": "completed" if ok else f"failed: {job_return._return_value!r}"[:300],
        }
        self.trials.append(trial)
        # every CLI shares the hydra group that installs this callback; outside a multirun a trial record is
        # litter in a single run's folder (the monitor's report folder, say)
        multirun = str(OmegaConf.select(hydra_cfg, "hydra.mode", default="")) == str(RunMode.MULTIRUN)
        if output_dir and multirun:
            try:
                (Path(output_dir) / TRIAL_FILE).write_text(json.dumps(trial))
            except OSError as err:  # the in-process record still serves a local sweep
                log.warning("could not write %s in %s: %s", TRIAL_FILE, output_dir, err)

    def gather(self, sweep_dir: Path) -> list[dict[str, Any]]:
        """Every trial of the sweep: the records its jobs wrote, else what this process saw."""
        found = []
        for path in sorted(sweep_dir.glob(f"*/{TRIAL_FILE}")):
            try:
                found.append(json.loads(path.read_text()))
            except (OSError, ValueError) as err:
                log.warning("skipping unreadable trial record %s: %s", path, err)
        return sorted(found, key=lambda t: t["job"]) if found else self.trials

    def best(self) -> dict[str, Any] | None:
        scored = [t for t in self.trials if t["value"] is not None]
        if not scored:
            return None
        pick = max if self.direction == "maximize" else min
        return pick(scored, key=lambda t: t["value"])

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(OmegaConf.select(config, "hydra.sweep.dir", default="."))
        self.trials = self.gather(sweep_dir)
        if not self.trials:
            return
        best = self.best()
        metric = OmegaConf.select(config, "optimized_metric", default="value")
        summary = {"metric": metric, "direction": self.direction, "best": best, "trials": self.trials}
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

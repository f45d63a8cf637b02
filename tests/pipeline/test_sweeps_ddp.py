"""Sweeps and DDP through the real CLI, as users run them (slow: several trainings each)."""

from __future__ import annotations

import json

import lightning as L
import mlflow
import pytest

from seismic.data.datamodule import SeismicDataModule
from seismic.tasks.classification import FaciesClassificationTask

from .conftest import TINY, run_script

pytestmark = pytest.mark.slow
ONE_EPOCH = [*TINY, "trainer.max_epochs=1", "section_plot=false"]


def runs(root, **filters):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db")
    experiment = client.get_experiment_by_name("seismic-train")
    found = client.search_runs([experiment.experiment_id])
    return [r for r in found if all(r.data.tags.get(k) == v for k, v in filters.items())]


def summary(root):
    (path,) = root.glob("outputs/train/multiruns/*/sweep_summary.json")
    return json.loads(path.read_text())


def test_grid_sweep_runs_every_combination_and_names_the_best(tmp_path):
    out = run_script(["scripts/train.py", "-m", "model=cnn1d,cnn2d", "model.width=8", *ONE_EPOCH], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = summary(tmp_path)
    assert len(result["trials"]) == 2 and all(t["value"] is not None for t in result["trials"])
    assert result["best"]["value"] == max(t["value"] for t in result["trials"])
    assert "best: val/macro_f1=" in out.stdout
    trial_runs = [r for r in runs(tmp_path) if "sweep_job" in r.data.tags]
    assert sorted(r.data.tags["model"] for r in trial_runs) == ["cnn1d", "cnn2d"]
    assert len({r.data.tags["sweep"] for r in trial_runs}) == 1
    (summary_run,) = runs(tmp_path, sweep_summary="true")
    assert summary_run.data.metrics["best_val_macro_f1"] == pytest.approx(result["best"]["value"])


def test_optuna_sweep_is_seeded_and_logs_each_trial(tmp_path):
    args = ["scripts/train.py", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *ONE_EPOCH]
    out = run_script(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    result = summary(tmp_path)
    assert len(result["trials"]) == 2
    assert any(o.startswith("model.optimizer.lr=") for o in result["trials"][0]["overrides"])
    assert len([r for r in runs(tmp_path) if "sweep_job" in r.data.tags]) == 2
    # seeded TPE: a second study proposes the same first trial
    again = run_script(args, tmp_path / "again")
    assert again.returncode == 0, again.stderr[-3000:]
    assert summary(tmp_path / "again")["trials"][0]["overrides"] == result["trials"][0]["overrides"]


def test_ddp_cpu_two_processes_sync_metrics_and_log_once(tmp_path):
    out = run_script(["scripts/train.py", "trainer=ddp_cpu", *TINY, "trainer.max_epochs=1"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    (run,) = runs(tmp_path)  # rank 1 created no run of its own
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/test_section.png" in figures
    # the logged test accuracy covers both ranks' halves: one process on the same checkpoint agrees
    (ckpt,) = [p for p in tmp_path.glob("outputs/train/runs/*/checkpoints/*.ckpt") if p.name != "last.ckpt"]
    task = FaciesClassificationTask.load_from_checkpoint(ckpt, map_location="cpu")
    dm = SeismicDataModule(
        source="synthetic",
        cache_dir=tmp_path / "data" / "cache",
        survey={"n_inlines": 40, "n_crosslines": 16, "n_samples": 96},
        split={"gap": 2},
        sampling={"train": 256, "val": 128, "test": 128},
        batch_size=64,
    )
    (single,) = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False).test(
        task, dm
    )
    assert run.data.metrics["test/accuracy"] == pytest.approx(single["test/accuracy"], abs=1e-6)

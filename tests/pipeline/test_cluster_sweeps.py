"""Sweeps through hydra-submitit-launcher (the optional extra ``.[cluster]``): the copyable
configs/hydra/launcher/slurm.yaml composes on the plugin's schema and its knobs reach sbatch; a 2-trial sweep
runs through submitit's local executor. Skipped, not installed, when the plugin is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import stat

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from .conftest import CONFIGS, TINY, run_script

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (pip install -e '.[cluster]')",
)


def compose_with_launcher(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def test_slurm_launcher_config_composes_on_the_plugins_schema(tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    cfg = compose_with_launcher(["hydra.launcher.partition=gpu", "model=cnn2d"])
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert (
        launcher["partition"] == "gpu" and launcher["timeout_min"] == 120 and launcher["gpus_per_node"] == 1
    )
    assert launcher["submitit_folder"].startswith(f"{tmp_path}/outputs/")  # inside the sweep folder
    assert cfg.model.name == "cnn2d"  # the rest of the config is untouched
    with pytest.raises(ConfigCompositionException, match="partion"):
        compose_with_launcher(["hydra.launcher.partion=gpu"])


def test_slurm_knobs_reach_the_sbatch_script(tmp_path, monkeypatch):
    """The plugin's own launch() builds the executor; sbatch is never called (no cluster here)."""
    import submitit

    # submitit refuses to build a SLURM executor where there is no srun; this one is never run
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    cfg = compose_with_launcher(
        [
            "hydra.launcher.partition=gpu",
            "hydra.launcher.account=geo",
            "hydra.launcher.timeout_min=45",
            "hydra.launcher.cpus_per_task=4",
            "hydra.launcher.setup=[module load cuda/12.4]",
        ]
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.config = cfg
    captured = {}

    def capture(executor, fn, *args):  # type: ignore[no-untyped-def]
        captured["executor"] = executor
        return []

    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    assert launcher.launch([["seed=1"], ["seed=2"]], initial_job_idx=0) == []
    # submitit's own rendering of the job script (a private method: no public one renders without submitting)
    script = captured["executor"]._executor._make_submission_file_text("python -m trial", "uid")
    for line in (
        "#SBATCH --partition=gpu",
        "#SBATCH --account=geo",
        "#SBATCH --time=45",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --gpus-per-node=1",
        "#SBATCH --mem=32GB",
        "module load cuda/12.4",
    ):
        assert line in script, f"{line!r} missing from\n{script}"


@pytest.mark.slow
def test_two_trial_sweep_through_submitit_local(tmp_path):
    out = run_script(
        [
            "scripts/train.py",
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "debug=fast_dev_run",
            "seed=1,2",
            *TINY,
        ],
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]  # the launcher raises if a trial failed
    (sweep,) = (tmp_path / "outputs" / "train" / "multiruns").iterdir()
    seeds = sorted(
        next(o for o in OmegaConf.load(d / ".hydra" / "overrides.yaml") if o.startswith("seed="))
        for d in sweep.iterdir()
        if d.name.isdigit()
    )
    assert seeds == ["seed=1", "seed=2"]
    # each trial ran as its own submitit job, which logged its end
    logs = sorted((sweep / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2 and all("Job completed successfully" in p.read_text() for p in logs)
    # the trials ended in other processes; the sweep summary still sees both (seismic/pipeline/sweep.py)
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert sorted(t["job"] for t in summary["trials"]) == [0, 1]
    assert all(t["status"] == "completed" for t in summary["trials"])
    assert "sweep of 2 trials" in out.stdout

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import seismic.config  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"

# a survey and sampling small enough for seconds-long runs; every code path stays the same
TINY = [
    "data.survey.n_inlines=40",
    "data.survey.n_crosslines=16",
    "data.survey.n_samples=96",
    "data.split.gap=2",
    "data.sampling.train=256",
    "data.sampling.val=128",
    "data.sampling.test=128",
    "data.batch_size=64",
    "trainer.enable_progress_bar=false",
    "trainer.accelerator=cpu",
]


@pytest.fixture()
def compose_train(tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))

    def _compose(overrides: list[str]) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
            cfg = compose(
                config_name="train",
                overrides=[f"paths.output_dir={tmp_path}/run", *TINY, *overrides],
                return_hydra_config=True,
            )
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.pop("hydra")
        return cfg

    return _compose


def run_script(args: list[str], root: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a CLI as a user would, in a fresh process with SEISMIC_ROOT=root."""
    import os

    env = {
        **os.environ,
        "SEISMIC_ROOT": str(root),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PYTHONUNBUFFERED": "1",
    }
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )

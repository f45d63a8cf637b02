"""SweepSummary writes a trial record only for trials of a sweep, not into every single run's folder."""

from __future__ import annotations

import json

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from seismic.pipeline.sweep import TRIAL_FILE, SweepSummary


def job(tmp_path, mode: RunMode) -> JobReturn:
    hydra_cfg = OmegaConf.create(
        {"hydra": {"mode": mode, "runtime": {"output_dir": str(tmp_path)}, "job": {"num": 3}}}
    )
    return JobReturn(
        overrides=["model.width=16"],
        cfg=OmegaConf.create({}),
        hydra_cfg=hydra_cfg,
        status=JobStatus.COMPLETED,
        _return_value=0.75,
    )


@pytest.mark.parametrize(("mode", "written"), [(RunMode.MULTIRUN, True), (RunMode.RUN, False)])
def test_trial_record_only_in_multiruns(tmp_path, mode, written):
    summary = SweepSummary()
    summary.on_job_end(OmegaConf.create({}), job(tmp_path, mode))
    assert (tmp_path / TRIAL_FILE).is_file() is written
    assert summary.trials[0]["value"] == 0.75  # the in-process record is kept either way
    if written:
        assert json.loads((tmp_path / TRIAL_FILE).read_text())["job"] == 3

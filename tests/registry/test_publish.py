"""The main job's chain: train -> publish (export, profile, register) -> promote/rollback CLIs."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import open_dict

import seismic.config  # noqa: F401
from seismic.export.onnx import read_metadata
from seismic.monitoring.profile import ReferenceProfile
from seismic.pipeline.train import train

from ..pipeline.conftest import CONFIGS, TINY, run_script

ONE_EPOCH = ["trainer.max_epochs=1", "section_plot=false", "publish.export.large_batch=64"]
# the promote CLI evaluates on the same tiny survey the model was trained on
TINY_DATA = [o for o in TINY if o.startswith("data.")]


def compose_train(tmp_path: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"paths.output_dir={tmp_path}/run", *TINY, *ONE_EPOCH, *overrides],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.pop("hydra")
    return cfg


def test_train_ends_with_an_exported_registered_challenger(tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    cfg = compose_train(tmp_path, [])
    metrics = train(cfg)
    folder = Path(cfg.publish.output_dir)
    assert folder == tmp_path / "run" / "model"
    assert {p.name for p in folder.iterdir()} == {
        "model.onnx",
        "metadata.json",
        "profile.json",
        "profile.npz",
        "model.pt",
    }
    meta = read_metadata(folder)
    assert meta["model_name"] == "seismic-facies" and meta["model_version"] == "1"
    assert meta["test_metrics"]["test/macro_f1"] == pytest.approx(metrics["test/macro_f1"])
    assert meta["parity"]["passed"] and {c["inputs"] for c in meta["parity"]["checks"]} == {"random", "real"}
    profile = ReferenceProfile.load(folder)
    assert profile.info["source"]["same_survey_as_training"] and profile.info["n_windows"] == 128

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    version = client.get_model_version_by_alias("seismic-facies", "challenger")
    assert version.version == 1 and version.run_id == meta["mlflow_run_id"]
    run = client.get_run(version.run_id)
    assert run.data.tags["registered_version"] == "1" and run.info.run_name.startswith("cnn1d-")
    assert float(version.tags["test/macro_f1"]) == pytest.approx(metrics["test/macro_f1"], abs=1e-6)
    calibration = meta["calibration"]  # fitted on val, measured on test, logged on the training run
    assert calibration["method"] == "temperature_scaling" and calibration["temperature"] > 0
    for key in ("temperature", "ece_before", "ece_after"):
        assert run.data.metrics[f"calibration/{key}"] == pytest.approx(calibration[key])


def test_publish_switched_off_or_without_mlflow(tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    train(compose_train(tmp_path, ["publish.enabled=false", "logger=none", "test=false"]))
    assert not (tmp_path / "run" / "model").exists()
    cfg = compose_train(tmp_path, ["logger=none", "test=false", f"paths.output_dir={tmp_path}/b"])
    train(cfg)  # exported, not registered: there is no MLflow run to register from
    assert read_metadata(tmp_path / "b" / "model")["model_version"] is None
    assert not (tmp_path / "mlflow.db").exists()


def printed_json(stdout: str) -> dict:
    """The JSON document a CLI printed last (Hydra's log lines may come before it on stdout)."""
    start = 0 if stdout.startswith("{") else stdout.rindex("\n{\n") + 1
    return json.loads(stdout[start:])


def one_line_error(result, code: int = 2) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_promote_cli_errors_are_one_line(tmp_path):
    line = one_line_error(run_script(["scripts/promote.py"], tmp_path))
    assert (
        line == f"promote failed: MLflow store sqlite:///{tmp_path}/mlflow.db does not exist: no model was "
        "registered there"
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_line_error(
        run_script(["scripts/promote.py", f"env.tracking_uri=http://127.0.0.1:{port}"], tmp_path)
    )
    assert f"127.0.0.1:{port} is unreachable" in line


def test_export_cli_without_or_with_a_missing_checkpoint_says_so(tmp_path):
    line = one_line_error(run_script(["scripts/export.py"], tmp_path))
    assert line == "export failed: ckpt_path is required: the Lightning checkpoint to export (ckpt_path=PATH)"
    missing = tmp_path / "nope.ckpt"
    line = one_line_error(run_script(["scripts/export.py", f"ckpt_path={missing}"], tmp_path))
    assert line == f"export failed: ckpt_path {missing}: no such checkpoint file"


@pytest.mark.parametrize(
    ("config", "override", "key"),
    [
        ("train", "publish.exprot.opset=18", "publish.exprot"),
        ("train", "registry.model=x", "registry.model"),
        ("export", "publish.profile.max_window=3", "publish.profile.max_window"),
        ("promote", "gate.margn=0.1", "gate.margn"),
    ],
)
def test_misspelt_keys_fail_at_composition(config, override, key, tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        good = compose(config_name=config, overrides=["ckpt_path=x.ckpt"] if config == "export" else [])
        assert good.registry.model_name == "seismic-facies"
        assert good.registry.tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"
        with pytest.raises(ConfigCompositionException, match=re.escape(key)):
            compose(config_name=config, overrides=[override])


@pytest.mark.slow
def test_main_job_chain_train_promote_rollback_export(tmp_path, monkeypatch):
    monkeypatch.setenv("SEISMIC_ROOT", str(tmp_path))
    cfg = compose_train(tmp_path, [])
    train(cfg)
    missing = run_script(["scripts/promote.py", "registry.model_name=nope", *TINY_DATA], tmp_path)
    assert "no registered model 'nope'" in one_line_error(missing)
    promoted = run_script(["scripts/promote.py", "gate.floor=0", *TINY_DATA], tmp_path)
    assert promoted.returncode == 0, promoted.stderr
    decision = printed_json(promoted.stdout)
    assert decision["promoted"] and decision["challenger"]["version"] == "1"
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert client.get_model_version_by_alias("seismic-facies", "champion").version == 1
    assert "first champion" in one_line_error(run_script(["scripts/promote.py", "action=rollback"], tmp_path))

    # a checkpoint exported and registered again: same weights, so "at least as good" promotes it
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    exported = run_script(
        ["scripts/export.py", f"ckpt_path={ckpt}", "publish.register=true", *TINY_DATA], tmp_path
    )
    assert exported.returncode == 0, exported.stderr
    assert printed_json(exported.stdout)["model_version"] == "2"
    refused = run_script(["scripts/promote.py", "gate.margin=0.05", *TINY_DATA], tmp_path)
    assert refused.returncode == 1 and "refused: macro_f1" in refused.stderr
    assert run_script(["scripts/promote.py", *TINY_DATA], tmp_path).returncode == 0
    rolled = run_script(["scripts/promote.py", "action=rollback"], tmp_path)
    back = {"model": "seismic-facies", "champion": "1", "rolled_back_from": "2"}
    assert printed_json(rolled.stdout) == back
    status = run_script(["scripts/promote.py", "action=status"], tmp_path)
    held = printed_json(status.stdout)
    assert status.returncode == 0 and held["champion"]["version"] == "1" and held["challenger"] is None
    assert held["champion"]["uri"] == "models:/seismic-facies@champion"

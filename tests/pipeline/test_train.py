from __future__ import annotations

import socket
import time
from pathlib import Path

import mlflow
import pytest
import torch

from seismic.models.registry import list_models
from seismic.pipeline.train import train
from seismic.registry.tracking_store import TrackingError
from seismic.tasks.classification import FaciesClassificationTask

from .conftest import TINY, run_script


@pytest.mark.parametrize("model", list_models())
def test_fast_dev_run_for_every_registered_model(model, compose_train, tmp_path):
    cfg = compose_train([f"model={model}", "debug=fast_dev_run"])
    metrics = train(cfg)
    assert 0.0 <= metrics["test/macro_f1"] <= 1.0 and "val/loss" in metrics


def test_mlflow_run_holds_config_metrics_provenance_and_figures(compose_train, tmp_path):
    cfg = compose_train(["trainer.max_epochs=2", "run_name=probe", "+tags.owner=tests"])
    metrics = train(cfg)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("seismic-train").experiment_id])[0]
    assert run.info.run_name == "probe" and run.data.tags["owner"] == "tests"
    assert run.data.params["model.name"] == "cnn1d" and run.data.params["data.window.length"] == "64"
    assert run.data.params["data.survey.n_inlines"] == "40"
    history = client.get_metric_history(run.info.run_id, "val/macro_f1")
    assert len(history) == 2  # one value per epoch
    assert run.data.metrics["test/macro_f1"] == pytest.approx(metrics["test/macro_f1"])
    assert {"train/loss_epoch", "val/accuracy", "val/miou", "test/accuracy"} <= set(run.data.metrics)
    assert any(k.startswith("test/f1_") for k in run.data.metrics)
    tags = run.data.tags
    assert len(tags["git_commit"].removesuffix("-dirty")) in (40, 7) or tags["git_commit"] == "unknown"
    assert len(tags["data_hash"]) == 64 and tags["model"] == "cnn1d"
    artifacts = set()
    for folder in ("config", "data", "figures"):
        artifacts |= {a.path for a in client.list_artifacts(run.info.run_id, folder)}
    assert {
        "config/config.yaml",
        "data/provenance.json",
        "figures/confusion_matrix.png",
        "figures/test_section.png",
    } <= artifacts
    provenance = client.download_artifacts(run.info.run_id, "data/provenance.json", str(tmp_path))
    assert '"generator": "seismic.data.synthetic"' in Path(provenance).read_text()
    assert (Path(cfg.paths.output_dir) / "figures" / "test_section.png").stat().st_size > 10_000


def test_resume_from_checkpoint_continues_the_run(compose_train, tmp_path):
    # a 2-epoch run that "crashed" after its first epoch: resume from that epoch's checkpoint
    cfg = compose_train(
        [
            "trainer.max_epochs=2",
            "logger=none",
            "test=false",
            "callbacks.model_checkpoint.save_top_k=-1",
            "callbacks.early_stopping=null",
        ]
    )
    train(cfg)
    first = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch000-*.ckpt"))
    state = torch.load(first, map_location="cpu", weights_only=False)
    assert state["epoch"] == 0
    cfg = compose_train(
        [
            "trainer.max_epochs=2",
            "logger=none",
            "test=false",
            f"ckpt_path={first}",
            f"paths.output_dir={tmp_path}/resumed",
        ]
    )
    train(cfg)
    resumed = torch.load(
        Path(tmp_path) / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * state["global_step"]
    # and the checkpoint rebuilds its net without Hydra or the config
    task = FaciesClassificationTask.load_from_checkpoint(first, map_location="cpu")
    assert task.hparams.window["length"] == 64 and task.hparams.normalisation["std"] > 0


def test_unknown_trainer_key_is_named(compose_train):
    cfg = compose_train([])
    from omegaconf import open_dict

    with open_dict(cfg):
        cfg.trainer.max_epoch = 3
    with pytest.raises(ValueError, match=r"trainer: unknown key\(s\) \['max_epoch'\]"):
        train(cfg)


def test_unreachable_tracking_server_fails_fast_with_one_line(compose_train):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = compose_train([f"env.tracking_uri=http://127.0.0.1:{port}"])
    started = time.monotonic()
    with pytest.raises(TrackingError, match=rf"127\.0\.0\.1:{port} is unreachable"):
        train(cfg)
    assert time.monotonic() - started < 10


def test_cli_reports_an_unreachable_server_in_one_line(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = run_script(["scripts/train.py", *TINY, f"env.tracking_uri=http://127.0.0.1:{port}"], tmp_path)
    assert done.returncode == 2
    assert "train.py: TrackingError: " in done.stderr and f"127.0.0.1:{port} is unreachable" in done.stderr
    assert "Traceback" not in done.stderr


def test_segmentation_run_logs_dense_metrics_figures_and_a_dense_model_folder(compose_train, tmp_path):
    """The model picks the task: model=unet2d trains FaciesSegmentationTask on dense tiles, logs the F3
    metrics and the held-out section figure, and publishes an ONNX graph with dynamic spatial axes."""
    import json

    from seismic.tasks import FaciesSegmentationTask, load_task

    cfg = compose_train(
        [
            "model=unet2d",
            "trainer.max_epochs=1",
            "data.sampling.train=32",
            "data.sampling.val=8",
            "data.sampling.test=8",
            "data.batch_size=8",
            "data.window.width=16",
            "data.window.length=64",
            "publish.profile.max_windows=16",
            "publish.calibration.max_windows=16",
            "run_name=seg",
        ]
    )
    metrics = train(cfg)
    for key in ("test/pa", "test/mca", "test/miou", "test/fwiu", "test/macro_f1", "val/miou"):
        assert 0.0 <= metrics[key] <= 1.0, key
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name("seismic-train").experiment_id])[0]
    assert {"test/fwiu", "test/miou", "val/mca"} <= set(run.data.metrics) and run.data.tags[
        "model"
    ] == "unet2d"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/confusion_matrix.png", "figures/test_section.png"} <= artifacts
    checkpoint = next((Path(cfg.paths.output_dir) / "checkpoints").glob("epoch*.ckpt"))
    assert isinstance(load_task(checkpoint), FaciesSegmentationTask)
    metadata = json.loads((Path(cfg.publish.output_dir) / "metadata.json").read_text())
    assert metadata["task"] == "segmentation" and metadata["tile"]["trained"] == [16, 64]
    assert {c["inputs"] for c in metadata["parity"]["checks"]} == {"random", "random_2x_tile", "real"}

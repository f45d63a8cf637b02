"""Publish a trained model: model folder (ONNX + metadata + reference profile + weights), then the registry.

:func:`publish` is the last step of :func:`seismic.pipeline.train.train` (``publish.enabled``);
:func:`export_checkpoint` is ``scripts/export.py``. Both build the folder with :func:`build_model_folder`:

``model.onnx``, ``metadata.json``  the exported graph and its metadata (:mod:`seismic.export.onnx`)
``profile.npz``, ``profile.json``  the reference profile (:mod:`seismic.monitoring.profile`)
``model.pt``                       the PyTorch weights, so the gate can re-check parity
                                   (:mod:`seismic.export.weights`)

The folder appears whole or not at all (parity failure, bad data: the previous folder, if any, stays).
The held-out windows are the test split of the configured survey(s), cut with the model's window spec:
parity runs on them and on random windows, the profile is built from the exported model's outputs on them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from seismic.export.calibration import calibration_report
from seismic.export.heldout import held_out_splits
from seismic.export.onnx import (
    ONNX_FILE,
    export_onnx,
    metadata_from_hparams,
    run_session,
    session,
    tile_summaries,
)
from seismic.export.weights import save_weights
from seismic.io.atomic import atomic_dir
from seismic.models.registry import model_task
from seismic.monitoring.profile import build_profile
from seismic.pipeline.sweep import sweep_tags
from seismic.pipeline.tracking import git_commit
from seismic.registry.store import connect, register_folder

log = logging.getLogger(__name__)
DENSE_PROFILE_TILES = 1024  # held-out tiles of a segmentation model profiled / calibrated on
REPO_ROOT = Path(__file__).resolve().parents[2]


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def build_model_folder(
    net: nn.Module,
    hparams: Mapping[str, Any],
    data: Mapping[str, Any],
    folder: str | Path,
    options: Mapping[str, Any],
    *,
    run_id: str | None = None,
    test_metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Export, check and profile ``net`` into ``folder``; returns the metadata plus ``input_example``.

    ``options`` is the ``publish`` config section (``export``: opset, parity_bound, large_batch;
    ``profile``: max_windows, max_embeddings, seed; ``calibration``: enabled, max_windows). Calibration is
    fitted on the validation split and measured on the test split (:mod:`seismic.export.calibration`).
    """
    export, profile = dict(options["export"]), dict(options["profile"])
    calibrate = dict(options.get("calibration") or {"enabled": False})
    dense = model_task(net) == "segmentation"
    if dense:  # a tile is thousands of samples: fewer of them describe the held-out data as well
        profile["max_windows"] = min(int(profile["max_windows"]), DENSE_PROFILE_TILES)
        calibrate["max_windows"] = min(int(calibrate.get("max_windows", 0)), DENSE_PROFILE_TILES)
    sizes = {"test": max(int(profile["max_windows"]), int(export["large_batch"]))}
    if calibrate["enabled"]:
        sizes["val"] = int(calibrate["max_windows"])
    splits = held_out_splits(data, hparams["window"], sizes)
    held = splits["test"]
    if held.data_hash != hparams.get("data_hash"):
        log.warning(
            "held-out windows come from survey data %s, the model was trained on %s: the reference profile "
            "describes other data than the training survey's test split",
            held.data_hash[:12],
            str(hparams.get("data_hash"))[:12],
        )
    windows = held.model_input(hparams["normalisation"])
    metadata = metadata_from_hparams(
        hparams,
        embedding_dim=int(net.embedding_dim),
        run_id=run_id,
        git_commit=git_commit(REPO_ROOT),
        test_metrics=test_metrics,
    )
    n_profile = min(len(windows), int(profile["max_windows"]))
    calibration = None
    if calibrate["enabled"]:
        val = splits["val"]
        calibration = calibration_report(
            raw_logits(net, val.model_input(hparams["normalisation"])), val.labels,
            raw_logits(net, windows), held.labels,
        )  # fmt: skip
    with atomic_dir(folder) as tmp:
        metadata = export_onnx(
            net,
            tmp,
            metadata,
            real_windows=windows,
            bound=float(export["parity_bound"]),
            large_batch=int(export["large_batch"]),
            opset=int(export["opset"]),
            calibration=calibration,
        )
        # dense models: one row per tile (mean probabilities, embedding), as their inference log has
        outputs = (tile_summaries if dense else run_session)(session(tmp / ONNX_FILE), windows[:n_profile])
        build_profile(
            held.raw[:n_profile],
            held.labels[:n_profile],
            outputs["probabilities"],
            outputs["embedding"],
            survey=held.survey[:n_profile],
            inline=held.inline[:n_profile],
            dt_ms=held.dt_ms,
            class_names=held.class_names,
            window=held.window,
            max_embeddings=int(profile["max_embeddings"]),
            seed=int(profile["seed"]),
            source={
                "data_hash": held.data_hash,
                "split": "test",
                "same_survey_as_training": held.data_hash == hparams.get("data_hash"),
                "architecture": metadata["architecture"],
                "graph_sha256": metadata["graph_sha256"],
                "mlflow_run_id": run_id,
            },
        ).save(tmp)
        save_weights(net, hparams, tmp)
    return {**metadata, "input_example": windows[:2]}


@torch.no_grad()
def raw_logits(net: nn.Module, windows: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The net's logits (float64) for normalised ``windows``, on CPU in eval mode; for a segmentation net
    the logits of each tile's centre sample (whose label the held-out split carries), so temperature
    scaling is fitted on one sample per tile."""
    module = net.cpu().float().eval()
    dense = model_task(net) == "segmentation"
    batch = min(batch, 32) if dense else batch
    parts = []
    for s in range(0, len(windows), batch):
        logits = module(torch.from_numpy(np.ascontiguousarray(windows[s : s + batch])))[0]
        if dense:
            logits = logits[(slice(None), slice(None), *(n // 2 for n in logits.shape[2:]))]
        parts.append(logits)
    return torch.cat(parts).double().numpy()


def _register(cfg: DictConfig, folder: Path, run_id: str, input_example: np.ndarray) -> dict[str, Any]:
    client = connect(cfg.registry.tracking_uri)
    version = register_folder(
        client, folder, name=cfg.registry.model_name, run_id=run_id, input_example=input_example
    )
    client.set_tag(run_id, "registered_model", cfg.registry.model_name)
    client.set_tag(run_id, "registered_version", str(version.version))
    log.info(
        "registered %s version %s (alias challenger) from run %s",
        cfg.registry.model_name,
        version.version,
        run_id,
    )
    return {"model_name": cfg.registry.model_name, "model_version": str(version.version)}


def _log_calibration(cfg: DictConfig, run_id: str, calibration: Mapping[str, Any]) -> None:
    """``calibration/{temperature,ece_before,ece_after,nll_before,nll_after}`` on the training run."""
    client = connect(cfg.registry.tracking_uri)
    for key in ("temperature", "ece_before", "ece_after", "nll_before", "nll_after"):
        client.log_metric(run_id, f"calibration/{key}", float(calibration[key]))
    log.info(
        "calibration: temperature %.3f, test ECE %.4f -> %.4f",
        calibration["temperature"],
        calibration["ece_before"],
        calibration["ece_after"],
    )


def publish(
    cfg: DictConfig,
    net: nn.Module,
    hparams: Mapping[str, Any],
    metrics: Mapping[str, float],
    run_id: str | None,
) -> dict[str, Any] | None:
    """The end of a training run: build the model folder and register it (alias ``challenger``).

    Skipped (``None``) when ``publish.enabled`` is false, for ``fast_dev_run`` (an untrained smoke test)
    and for sweep trials (register the best trial with ``scripts/export.py`` instead). Registration needs
    the run's MLflow ``run_id`` (``logger=mlflow``) and ``publish.register``.
    """
    if not cfg.publish.enabled:
        return None
    if (cfg.trainer or {}).get("fast_dev_run") or sweep_tags():
        log.info("publish skipped: fast_dev_run or a sweep trial")
        return None
    folder = Path(cfg.publish.output_dir)
    test_metrics = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
    started = time.perf_counter()
    metadata = build_model_folder(
        net, hparams, _plain(cfg.data), folder, _plain(cfg.publish), run_id=run_id, test_metrics=test_metrics
    )
    result: dict[str, Any] = {
        "folder": str(folder),
        "parity_max_abs": metadata["parity"]["max_abs_error"],
        "export_seconds": metadata["parity"]["export_seconds"],
    }
    log.info(
        "model folder %s: parity max |onnx - torch| = %.3g (bound %g)",
        folder,
        result["parity_max_abs"],
        metadata["parity"]["bound"],
    )
    if run_id is not None and metadata["calibration"]["method"] != "none":
        _log_calibration(cfg, run_id, metadata["calibration"])
    if cfg.publish.register and run_id is not None:
        result.update(_register(cfg, folder, run_id, metadata["input_example"]))
    elif cfg.publish.register:
        log.warning(
            "publish.register: no MLflow run (logger is not mlflow), the model folder is not registered"
        )
    result["publish_seconds"] = round(time.perf_counter() - started, 2)
    return result


def export_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """``scripts/export.py``: a Lightning checkpoint -> model folder (-> registry with ``publish.register``).

    Without ``run_id`` a registration gets its own MLflow run (experiment ``seismic-export``) as its source.
    """
    from seismic.tasks import load_task

    if not cfg.get("ckpt_path"):
        raise ValueError("ckpt_path is required: the Lightning checkpoint to export (ckpt_path=PATH)")
    if not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path {cfg.ckpt_path}: no such checkpoint file")
    if cfg.publish.register:  # fail before the export work, not after
        client = connect(cfg.registry.tracking_uri)
    task = load_task(cfg.ckpt_path, map_location="cpu")
    hparams = _plain(dict(task.hparams))
    folder = Path(cfg.publish.output_dir)
    metadata = build_model_folder(task.net, hparams, _plain(cfg.data), folder, _plain(cfg.publish))
    result: dict[str, Any] = {
        "folder": str(folder),
        "architecture": metadata["architecture"],
        "parity": {k: v for k, v in metadata["parity"].items() if k != "checks"},
    }
    if cfg.publish.register:
        run_id = cfg.run_id
        if run_id is None:
            experiment = client.get_experiment_by_name("seismic-export")
            experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else client.create_experiment("seismic-export", artifact_location=cfg.env.artifact_location)
            )
            run = client.create_run(experiment_id, run_name=f"export-{metadata['architecture']}")
            client.log_param(run.info.run_id, "ckpt_path", str(cfg.ckpt_path))
            client.set_terminated(run.info.run_id)
            run_id = run.info.run_id
        result.update(_register(cfg, folder, run_id, metadata["input_example"]))
    return result

"""``train(cfg)``: data -> task -> Lightning fit/test -> MLflow record; ``scripts/train.py`` wraps it.

Everything is built from the composed config; the network itself is built inside the task from a name and
plain keyword arguments, so checkpoints reload (and export) without Hydra.
"""

from __future__ import annotations

import inspect
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from seismic.data.datamodule import SeismicDataModule
from seismic.data.survey import Survey
from seismic.data.windows import extract_windows
from seismic.inference.tiling import blend_sections
from seismic.models import model_task
from seismic.pipeline.plots import confusion_matrix_figure, section_figure
from seismic.pipeline.precision import resolve_precision
from seismic.pipeline.publish import publish
from seismic.pipeline.sweep import sweep_tags
from seismic.pipeline.tracking import RunRecorder, flatten, git_commit, save_figure
from seismic.registry.tracking_store import check_tracking_uri
from seismic.tasks import FaciesClassificationTask, FaciesSegmentationTask, task_class

log = logging.getLogger(__name__)

TASK_KEYS = ("name", "optimizer", "scheduler", "loss")
# model.loss keys each task takes (the rest of model.* are the network's keyword arguments)
LOSS_KEYS = {
    "classification": {"class_weights", "label_smoothing"},
    "segmentation": {"class_weights", "label_smoothing", "dice_weight"},
}


def container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def check_trainer_keys(trainer_cfg: dict[str, Any]) -> None:
    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(set(trainer_cfg) - accepted)
    if unknown:
        raise ValueError(f"trainer: unknown key(s) {unknown} for lightning.Trainer {L.__version__}")


def build_datamodule(cfg: DictConfig) -> SeismicDataModule:
    """The data module; a segmentation model (the model picks the task) gets dense targets."""
    return SeismicDataModule(**container(cfg.data), dense=model_task(cfg.model.name) == "segmentation")


def build_task(cfg: DictConfig, dm: SeismicDataModule) -> FaciesClassificationTask:
    """The task the model declares (:func:`seismic.tasks.task_class`), built from the model config."""
    model = container(cfg.model)
    task = model_task(model["name"])
    loss = model.get("loss") or {}
    unknown = sorted(set(loss) - LOSS_KEYS[task])
    if unknown:
        raise ValueError(
            f"model.loss: unknown key(s) {unknown} for a {task} model; expected {sorted(LOSS_KEYS[task])}"
        )
    extra = {"dice_weight": float(loss.get("dice_weight") or 0.0)} if task == "segmentation" else {}
    return task_class(model["name"])(
        model=model["name"],
        model_kwargs={k: v for k, v in model.items() if k not in TASK_KEYS},
        num_classes=len(dm.class_names),
        class_names=list(dm.class_names),
        class_weights=loss.get("class_weights"),
        label_smoothing=float(loss.get("label_smoothing", 0.0)),
        optimizer=model.get("optimizer") or {},
        scheduler=model.get("scheduler"),
        window=dm.window.to_dict(),
        normalisation=dm.normalisation.to_dict(),
        data_hash=dm.data_hash,
        metadata=data_metadata(dm),
        **extra,
    )


def data_metadata(dm: SeismicDataModule) -> dict[str, Any]:
    """Besides window, scaling and data hash (task arguments of their own): what an exported model carries."""
    return {
        "dt_ms": float(dm.meta["dt_ms"]),
        "provenance": dm.meta.get("provenance", {}),
        "split": dm.split.to_dict(),
    }


def build_loggers(cfg: DictConfig, run_name: str) -> list[Any]:
    loggers = []
    for name, node in (cfg.logger or {}).items():
        if node is None:
            continue
        options = container(node)
        if "MLFlowLogger" in options.get("_target_", ""):
            check_tracking_uri(options["tracking_uri"])
            options["run_name"] = options.get("run_name") or run_name
            options["tags"] = {
                **{str(k): str(v) for k, v in (container(cfg.tags) or {}).items()},
                **sweep_tags(),
            }
        log.debug("logger %s: %s", name, options)
        loggers.append(instantiate(options))
    return loggers


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, test and record one run; returns scalar metrics (``val/*`` best and last, ``test/*``)."""
    logging.getLogger("seismic").setLevel(cfg.env.log_level)
    trainer_options = container(cfg.trainer)
    check_trainer_keys(trainer_options)
    trainer_options["precision"] = resolve_precision(
        trainer_options.get("precision"), trainer_options.get("accelerator")
    )
    log.info("trainer precision: %s", trainer_options["precision"])
    if (cfg.data.get("sampling") or {}).get("resample_train"):
        # fresh training windows each epoch only reach the loop if Lightning asks for a new loader
        trainer_options["reload_dataloaders_every_n_epochs"] = 1
    run_name = cfg.run_name or f"{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    loggers = build_loggers(cfg, run_name)
    L.seed_everything(cfg.seed, workers=True)

    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    task = build_task(cfg, dm)
    callbacks = [instantiate(node) for node in (cfg.callbacks or {}).values() if node is not None]
    if not loggers:  # nothing to report learning rates to (logger=none, fast_dev_run)
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    if not trainer_options.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer = L.Trainer(
        **trainer_options, callbacks=callbacks, logger=loggers or False, default_root_dir=cfg.paths.output_dir
    )
    mlflow = next((lg for lg in loggers if isinstance(lg, MLFlowLogger)), None)
    recorder = RunRecorder(mlflow) if mlflow is not None and trainer.is_global_zero else None
    if recorder:
        record_context(recorder, cfg, dm)
        recorder.params({"trainer.precision_resolved": trainer_options["precision"]})

    metrics: dict[str, float] = {}
    if cfg.train:
        trainer.fit(task, datamodule=dm, ckpt_path=cfg.ckpt_path)
        metrics.update(scalars(trainer.callback_metrics))
        best = best_checkpoint(trainer)
        if best is not None and best.best_model_score is not None:
            metrics[f"{best.monitor}_best"] = float(best.best_model_score)
    if cfg.test:
        best = best_checkpoint(trainer)
        ckpt = "best" if cfg.train and best is not None and best.best_model_path else cfg.ckpt_path
        trainer.test(task, datamodule=dm, ckpt_path=ckpt)
        metrics.update({k: v for k, v in scalars(trainer.callback_metrics).items() if k.startswith("test/")})
        if trainer.is_global_zero:
            record_figures(recorder, cfg, dm, task)
    if recorder:
        recorder.metrics(
            {k.replace("/", "_") + "_final": v for k, v in metrics.items() if k.startswith("test/")}
        )
    if trainer.is_global_zero:  # ONNX + reference profile + registry (seismic/pipeline/publish.py)
        publish(cfg, task.net, dict(task.hparams), metrics, mlflow.run_id if mlflow is not None else None)
    return metrics


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, torch.Tensor | float | int) and np.ndim(v) == 0
    }


def best_checkpoint(trainer: L.Trainer) -> ModelCheckpoint | None:
    return trainer.checkpoint_callback if isinstance(trainer.checkpoint_callback, ModelCheckpoint) else None


def record_context(recorder: RunRecorder, cfg: DictConfig, dm: SeismicDataModule) -> None:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    recorder.params(flatten({k: v for k, v in resolved.items() if k not in ("callbacks", "logger", "paths")}))
    recorder.text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
    recorder.json(dm.meta.get("provenance", {}), "data/provenance.json")
    recorder.tags(
        {
            "git_commit": git_commit(Path(__file__).resolve().parents[2]),
            "data_hash": dm.data_hash,
            "data_source": cfg.data.source,
            "model": cfg.model.name,
            "env": cfg.env.name,
        }
    )


def record_figures(
    recorder: RunRecorder | None, cfg: DictConfig, dm: SeismicDataModule, task: FaciesClassificationTask
) -> None:
    out = Path(cfg.paths.output_dir) / "figures"
    confusion = getattr(task, "test_confusion", None)
    if confusion is not None:
        fig = confusion_matrix_figure(confusion, dm.class_names)
        save_figure(fig, out, "confusion_matrix.png")
        if recorder:
            recorder.figure(fig, "figures/confusion_matrix.png")
            recorder.json(
                {"class_names": list(dm.class_names), "matrix": np.asarray(confusion).tolist()},
                "figures/confusion_matrix.json",
            )
    if cfg.section_plot:
        amplitudes, truth, predicted, inline = predict_test_section(dm, task)
        fig = section_figure(
            amplitudes,
            truth,
            predicted,
            dm.class_names,
            float(dm.meta["dt_ms"]),
            f"held-out inline {inline} ({cfg.model.name})",
        )
        save_figure(fig, out, "test_section.png")
        if recorder:
            recorder.figure(fig, "figures/test_section.png")


@torch.no_grad()
def predict_test_section(
    dm: SeismicDataModule, task: FaciesClassificationTask, batch_size: int = 1024
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Classify every sample of the middle inline of the first survey's test block (windows read only the
    test block)."""
    survey = Survey.load(dm.survey_dirs[0], mmap=True)
    lo, hi = dm.blocks[0]["test"]
    block = survey.amplitudes[lo:hi]
    local = (hi - lo) // 2
    n_xl, n_t = block.shape[1:]
    if isinstance(task, FaciesSegmentationTask):
        predicted = predict_section_dense(np.asarray(block[local], dtype=np.float32), dm, task)
        return (
            np.asarray(block[local]),
            np.asarray(survey.labels[lo + local]),
            predicted,
            int(survey.inlines[lo + local]),
        )
    xl, t = (a.ravel() for a in np.meshgrid(np.arange(n_xl), np.arange(n_t), indexing="ij"))
    il = np.full_like(xl, local)
    net = task.net.eval()
    device = next(net.parameters()).device
    predicted = np.empty(xl.size, dtype=np.int64)
    for start in range(0, xl.size, batch_size):
        s = slice(start, start + batch_size)
        windows = dm.normalisation.apply(extract_windows(block, il[s], xl[s], t[s], dm.window))
        logits, _ = net(torch.from_numpy(windows).to(device))
        predicted[s] = logits.argmax(dim=1).cpu().numpy()
    return (
        np.asarray(block[local]),
        np.asarray(survey.labels[lo + local]),
        predicted.reshape(n_xl, n_t),
        int(survey.inlines[lo + local]),
    )


@torch.no_grad()
def predict_section_dense(
    section: np.ndarray, dm: SeismicDataModule, task: FaciesClassificationTask, overlap: float = 0.25
) -> np.ndarray:
    """Classes ``[n_xl, n_t]`` of one inline section by a segmentation net: blended overlapping tiles of the
    training tile size (:mod:`seismic.inference.tiling`), as batch scoring labels a cube."""
    net = task.net.eval()
    device = next(net.parameters()).device

    def run(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, embedding = net(torch.from_numpy(tiles).to(device))
        return torch.softmax(logits.float(), dim=1).cpu().numpy(), embedding.float().cpu().numpy()

    if dm.window.width == 1:  # 1D net: every trace is a section of its own
        tile, sections = (dm.window.length,), section
    else:
        tile, sections = (dm.window.width, dm.window.length), section[None]
    probabilities = blend_sections(
        sections,
        run,
        tile,
        overlap=overlap,
        num_classes=len(dm.class_names),
        normalise=dm.normalisation.apply,
    )
    classes = probabilities.argmax(axis=1)
    return classes if dm.window.width == 1 else classes[0]

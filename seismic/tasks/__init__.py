"""Lightning tasks: what is optimised and measured, independent of the data and the network.

The model picks the task: a registered network declares ``task`` (:func:`seismic.models.model_task`),
``"classification"`` (label at the window centre, :class:`FaciesClassificationTask`) or ``"segmentation"``
(a label for every sample of a tile, :class:`FaciesSegmentationTask`); :func:`task_class` maps a model name
to its LightningModule and :func:`load_task` reloads any checkpoint with the right one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seismic.models import model_task
from seismic.tasks.classification import MONITOR, MONITOR_MODE, FaciesClassificationTask, build_metrics
from seismic.tasks.segmentation import FaciesSegmentationTask, dense_scores

TASK_CLASSES: dict[str, type[FaciesClassificationTask]] = {
    "classification": FaciesClassificationTask,
    "segmentation": FaciesSegmentationTask,
}

__all__ = [
    "MONITOR",
    "MONITOR_MODE",
    "TASK_CLASSES",
    "FaciesClassificationTask",
    "FaciesSegmentationTask",
    "build_metrics",
    "dense_scores",
    "load_task",
    "task_class",
]


def task_class(model: str) -> type[FaciesClassificationTask]:
    """The LightningModule class that trains registered model ``model``."""
    return TASK_CLASSES[model_task(model)]


def load_task(ckpt_path: str | Path, map_location: Any = "cpu") -> FaciesClassificationTask:
    """A task checkpoint, reloaded with the class its model's task names (read from its hyperparameters)."""
    import torch

    checkpoint = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters") or {}
    if "model" not in hparams:
        raise ValueError(f"{ckpt_path}: not a seismic task checkpoint (no 'model' in its hyperparameters)")
    return task_class(str(hparams["model"])).load_from_checkpoint(str(ckpt_path), map_location=map_location)

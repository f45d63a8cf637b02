"""Facies classification at the window centre as a LightningModule.

The task takes plain values only (strings, numbers, lists, dicts; an OmegaConf node is converted on the
way in), saves them all with ``save_hyperparameters``, and builds its network by name from the model
registry, so ``FaciesClassificationTask.load_from_checkpoint(path)`` rebuilds the same net without Hydra or
extra arguments.
Metadata the deployed model needs (window spec, normalisation, data hash, ...) rides along in the same
hyperparameters and is therefore inside every checkpoint.

Metrics: one :class:`~torchmetrics.MetricCollection` cloned per stage with the prefixes ``train/``, ``val/``,
``test/``. Logged at the end of each epoch, from values that torchmetrics has already synchronised across
DDP ranks: ``<stage>/accuracy`` (overall), ``<stage>/balanced_accuracy`` (mean per-class recall),
``<stage>/macro_f1``, ``<stage>/f1_<class name>``, ``<stage>/miou`` (macro Jaccard). The confusion matrix is
not a scalar and is not logged: after an epoch it is kept as a numpy array in ``self.train_confusion``,
``self.val_confusion`` and ``self.test_confusion`` (rows: true class, columns: predicted class).
``val/macro_f1`` is the monitor for checkpointing and early stopping (:data:`MONITOR`, mode ``max``).

Losses: ``train/loss`` per step and ``train/loss_epoch`` (epoch mean), ``val/loss`` and ``test/loss`` per
epoch; all with ``sync_dist=True``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
)
from torchmetrics.wrappers import ClasswiseWrapper

from seismic.models import build_model

MONITOR = "val/macro_f1"
MONITOR_MODE = "max"
STAGES = ("train", "val", "test")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("cosine", "onecycle", "plateau", "none")
DEFAULT_OPTIMIZER: dict[str, Any] = {"name": "adamw", "lr": 2e-3, "weight_decay": 1e-4}
# Predictions are buffered and fed to the metrics every this many steps: a MetricCollection update costs
# ~1 ms per call on CPU whatever the batch size, a tenth of a cnn1d training step.
METRIC_UPDATE_EVERY = 32


def to_plain(value: Any) -> Any:
    """OmegaConf nodes, tuples, numpy scalars/arrays and tensors -> dicts, lists and Python scalars."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf ships with hydra, a dependency
        pass
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor | np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def metric_key(name: str) -> str:
    """A class name as used in metric keys (``f1_<key>``): runs of other than ``[A-Za-z0-9_.-]`` -> ``_``."""
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", str(name)).strip("_") or "class"


def build_metrics(num_classes: int, class_names: Sequence[str]) -> MetricCollection:
    """The metric set of one stage, unprefixed; ``clone(prefix=...)`` it per stage."""
    keys = [metric_key(n) for n in class_names]
    if len(set(keys)) != len(keys):
        raise ValueError(f"class names {list(class_names)} are not unique as metric keys {keys}")
    return MetricCollection(
        {
            "accuracy": MulticlassAccuracy(num_classes, average="micro"),
            "balanced_accuracy": MulticlassAccuracy(num_classes, average="macro"),
            "macro_f1": MulticlassF1Score(num_classes, average="macro"),
            "f1": ClasswiseWrapper(MulticlassF1Score(num_classes, average=None), labels=keys, prefix="f1_"),
            "miou": MulticlassJaccardIndex(num_classes, average="macro"),
            "confusion": MulticlassConfusionMatrix(num_classes),
        },
        # Explicit groups that share state; automatic detection would also put the classwise wrapper in one,
        # which works but makes torchmetrics warn about compute-before-update after every reset.
        compute_groups=[["accuracy"], ["balanced_accuracy", "macro_f1"], ["f1"], ["miou", "confusion"]],
    )


class FaciesClassificationTask(L.LightningModule):
    """Classify the facies at the window centre with a registered network.

    Args:
        model: registry name (``"cnn1d"``, ``"cnn2d"``, see :func:`seismic.models.list_models`).
        model_kwargs: keyword arguments of that model, except ``num_classes``.
        num_classes: number of facies classes.
        class_names: one name per class (metric keys ``f1_<name>``); default ``class_0 ...``.
        class_weights: per-class weights of the cross-entropy; ``None`` for unweighted.
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
        optimizer: ``{"name": "adam" | "adamw" | "sgd", "lr": ..., "weight_decay": ..., **optimizer kwargs}``;
            ``"decay_norm_and_bias": False`` (default) exempts biases and norm weights from weight decay.
        scheduler: ``None`` or ``{"name": "cosine" | "onecycle" | "plateau" | "none", "interval": "epoch" |
            "step", ...}``. ``cosine``: ``T_max`` (default: the run's epochs or steps by ``interval``),
            ``eta_min``, ``warmup`` (intervals of linear warm-up). ``onecycle``: always per step, total steps
            from ``trainer.estimated_stepping_batches``; ``max_lr`` defaults to the optimizer's ``lr``,
            other keys go to :class:`~torch.optim.lr_scheduler.OneCycleLR`. ``plateau``: per epoch on
            ``monitor`` (default ``val/macro_f1``, ``mode`` max), other keys go to ``ReduceLROnPlateau``.
        window: the window spec the model was trained on (``WindowSpec.to_dict()``); checked against the
            model's input dimensionality and used for ``example_input_array``.
        normalisation: the amplitude normalisation (``Normalisation.to_dict()``) serving must apply.
        data_hash: content hash of the training survey.
        metadata: anything else to carry in the checkpoint (plain values).
    """

    def __init__(
        self,
        model: str = "cnn1d",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 6,
        class_names: list[str] | None = None,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        window: dict[str, Any] | None = None,
        normalisation: dict[str, Any] | None = None,
        data_hash: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Plain containers before save_hyperparameters (it reads these locals), so checkpoints hold no
        # OmegaConf objects and load with torch.load(weights_only=True).
        model_kwargs = to_plain(model_kwargs) or {}
        class_names = to_plain(class_names)
        class_weights = to_plain(class_weights)
        optimizer = to_plain(optimizer) if optimizer is not None else dict(DEFAULT_OPTIMIZER)
        scheduler = to_plain(scheduler)
        window = to_plain(window)
        normalisation = to_plain(normalisation)
        metadata = to_plain(metadata)
        num_classes = int(num_classes)
        label_smoothing = float(label_smoothing)
        self.save_hyperparameters()

        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if "num_classes" in model_kwargs:
            raise ValueError("model_kwargs must not set num_classes; pass num_classes to the task")
        if class_names is None:
            class_names = [f"class_{i}" for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names for num_classes={num_classes}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(class_weights)} values for num_classes={num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        _check_optimizer(optimizer)
        _check_scheduler(scheduler)

        self.class_names = [str(n) for n in class_names]
        self.net = build_model(model, num_classes=num_classes, **model_kwargs)
        if int(getattr(self.net, "num_classes", num_classes)) != num_classes:
            raise ValueError(
                f"model {model!r} has {self.net.num_classes} outputs, the task {num_classes} classes"
            )

        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(class_weights, dtype=torch.float32)
            if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(f"class_weights must be finite, >= 0 and not all zero, got {class_weights}")
        # Not persistent: the hyperparameters rebuild it, and state_dicts stay model-only.
        self.class_weight: torch.Tensor | None
        self.register_buffer("class_weight", weights, persistent=False)

        if window is not None:
            width = int(window.get("width", 1))
            window_ndim = 1 if width == 1 else 2
            if window_ndim != self.net.input_ndim:
                raise ValueError(
                    f"window width {width} gives {window_ndim}D samples but model {model!r} takes "
                    f"{self.net.input_ndim}D input"
                )
            length = int(window.get("length", 64))
            channels = int(getattr(self.net, "in_channels", 1))
            shape = (channels, length) if window_ndim == 1 else (channels, width, length)
            self.example_input_array = torch.zeros(1, *shape)

        metrics = build_metrics(num_classes, self.class_names)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.train_loss_mean = MeanMetric()
        self._updated = dict.fromkeys(STAGES, False)
        self._pending: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {stage: [] for stage in STAGES}
        self.train_confusion: np.ndarray | None = None
        self.val_confusion: np.ndarray | None = None
        self.test_confusion: np.ndarray | None = None

    # ------------------------------------------------------------------ forward and loss

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits [B, C], embedding [B, D])`` of the network."""
        return self.net(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Under autocast cross_entropy runs in float32 by itself; no cast here.
        return F.cross_entropy(
            logits, target, weight=self.class_weight, label_smoothing=self.hparams.label_smoothing
        )

    def _shared_step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits, _ = self(x)
        loss = self.loss(logits, y)
        self._pending[stage].append((logits.detach().argmax(dim=1), y))
        if len(self._pending[stage]) >= METRIC_UPDATE_EVERY:
            self._flush_metrics(stage)
        log = {"sync_dist": True, "batch_size": y.shape[0]}
        if stage == "train":
            # self.log costs ~1 ms a call on CPU, as much as the metric updates: the epoch mean goes through a
            # metric (synced across ranks at epoch end), the step loss is logged only when a logger writes it
            self.train_loss_mean.update(loss.detach(), weight=y.shape[0])
            if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
                self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, **log)
        else:
            self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", **log)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """``{"probabilities": [B, C] float32, "class": [B] int64, "embedding": [B, D]}``; the batch may be
        ``x`` or ``(x, ...)``."""
        x = batch[0] if isinstance(batch, list | tuple) else batch
        logits, embedding = self(x)
        probabilities = torch.softmax(logits.float(), dim=1)
        return {"probabilities": probabilities, "class": probabilities.argmax(dim=1), "embedding": embedding}

    # ------------------------------------------------------------------ epoch-end metrics

    def _flush_metrics(self, stage: str) -> None:
        pending = self._pending[stage]
        if pending:
            getattr(self, f"{stage}_metrics").update(
                torch.cat([p for p, _ in pending]), torch.cat([t for _, t in pending])
            )
            pending.clear()
            self._updated[stage] = True

    def _log_epoch_metrics(self, stage: str) -> None:
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        self._flush_metrics(stage)
        if not self._updated[stage]:
            return
        values = metrics.compute()  # synchronised across ranks by torchmetrics
        confusion = values.pop(f"{stage}/confusion")
        setattr(self, f"{stage}_confusion", confusion.detach().cpu().numpy())
        if stage == "val":
            self.log(MONITOR, values.pop(MONITOR), prog_bar=True, sync_dist=True)
        # Values are already identical on every rank; sync_dist only averages equal numbers (and keeps
        # Lightning from warning about unsynchronised epoch-level logs).
        self.log_dict(values, sync_dist=True)
        metrics.reset()
        self._updated[stage] = False

    def on_train_epoch_end(self) -> None:
        if self._updated["train"] or self._pending["train"]:
            self.log("train/loss_epoch", self.train_loss_mean.compute(), sync_dist=True)
            self.train_loss_mean.reset()
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> Any:
        optimizer = _build_optimizer(self.net, dict(self.hparams.optimizer))
        config = self.hparams.scheduler
        if config is None or config.get("name", "none") == "none":
            return optimizer
        scheduler = self._build_scheduler(optimizer, dict(config))
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def _build_scheduler(self, optimizer: torch.optim.Optimizer, config: dict[str, Any]) -> dict[str, Any]:
        name = config.pop("name")
        interval = config.pop("interval", "step" if name == "onecycle" else "epoch")
        frequency = int(config.pop("frequency", 1))
        if name == "onecycle":
            if interval != "step":
                raise ValueError("scheduler onecycle steps per batch: interval must be 'step'")
            total = self._total_steps()
            max_lr = config.pop("max_lr", [g["lr"] for g in optimizer.param_groups])
            scheduler: Any = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=max_lr, total_steps=total, **config
            )
            return {"scheduler": scheduler, "interval": "step", "frequency": 1}
        if name == "cosine":
            warmup = int(config.pop("warmup", 0))
            t_max = config.pop("T_max", None)
            if t_max is None:
                t_max = self._total_steps() if interval == "step" else self._total_epochs()
            t_max = max(int(t_max) - warmup, 1)
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t_max, **config)
            if warmup > 0:
                ramp = torch.optim.lr_scheduler.LinearLR(
                    optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup
                )
                scheduler = torch.optim.lr_scheduler.SequentialLR(
                    optimizer, [ramp, scheduler], milestones=[warmup]
                )
            return {"scheduler": scheduler, "interval": interval, "frequency": frequency}
        # plateau
        monitor = config.pop("monitor", MONITOR)
        strict = bool(config.pop("strict", True))
        config.setdefault("mode", MONITOR_MODE if monitor == MONITOR else "min")
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **config)
        return {
            "scheduler": scheduler,
            "interval": interval,
            "frequency": frequency,
            "monitor": monitor,
            "strict": strict,
        }

    def _total_steps(self) -> int:
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total) or total < 1:
            raise ValueError(
                "the scheduler needs the number of training steps: set trainer max_epochs or max_steps "
                "(or the scheduler's T_max)"
            )
        return int(total)

    def _total_epochs(self) -> int:
        epochs = self.trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError(
                "scheduler cosine per epoch needs trainer max_epochs >= 1 (or the scheduler's T_max)"
            )
        return int(epochs)


def _check_optimizer(config: Mapping[str, Any]) -> None:
    name = config.get("name")
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {name!r}")
    if "lr" not in config or not float(config["lr"]) > 0:
        raise ValueError(f"optimizer.lr must be given and > 0, got {config.get('lr')!r}")


def _check_scheduler(config: Mapping[str, Any] | None) -> None:
    if config is None:
        return
    name = config.get("name", "none")
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler.name must be one of {SCHEDULERS}, got {name!r}")
    interval = config.get("interval", "step" if name == "onecycle" else "epoch")
    if interval not in ("epoch", "step"):
        raise ValueError(f"scheduler.interval must be 'epoch' or 'step', got {interval!r}")


def _build_optimizer(module: nn.Module, config: dict[str, Any]) -> torch.optim.Optimizer:
    name = config.pop("name")
    lr = float(config.pop("lr"))
    weight_decay = float(config.pop("weight_decay", 0.0))
    decay_all = bool(config.pop("decay_norm_and_bias", False))
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (decay if decay_all or param.ndim > 1 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    try:
        return cls(groups, lr=lr, **config)
    except TypeError as err:
        raise ValueError(f"optimizer {name!r}: bad option(s) {sorted(config)}: {err}") from None

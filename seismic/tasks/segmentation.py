"""Dense facies segmentation as a LightningModule: a label for every sample of a tile.

Beside :class:`~seismic.tasks.classification.FaciesClassificationTask` and built the same way (plain
hyperparameters, the network by name from the registry, ``load_from_checkpoint`` without Hydra); the model
picks the task (``task = "segmentation"`` on its class, :func:`seismic.models.model_task`), and
:func:`seismic.tasks.task_class` maps it to this module. Batches are ``(tiles [B, 1, (W,) T], targets
[B, (W,) T])``; targets equal to :data:`~seismic.data.windows.IGNORE_INDEX` (constant padding) are skipped by
the loss and the metrics.

Loss: cross-entropy over every sample with the class weights and label smoothing of classification, plus
``dice_weight`` x soft Dice loss (mean over the classes present in the batch) when ``dice_weight > 0``.

Metrics (the F3 facies benchmark's set, Alaudah et al. 2019), per stage ``train/``, ``val/``, ``test/``, from
one :class:`~torchmetrics.classification.MulticlassConfusionMatrix` per stage (a single bincount per batch,
synchronised across DDP ranks by torchmetrics) at the end of each epoch (:func:`dense_scores`):
``pa`` (pixel accuracy; also logged as ``accuracy``), ``ca_<class>`` (class accuracy: recall of each class),
``mca`` (mean class accuracy; also ``balanced_accuracy``), ``miou`` (mean IoU), ``fwiu`` (frequency-weighted
IoU), ``macro_f1`` (dense macro F1, so the checkpoint/early-stopping monitor ``val/macro_f1`` works for both
tasks; the segmentation recipes monitor ``val/miou``). The confusion matrix is kept as
``self.<stage>_confusion`` like classification's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassConfusionMatrix

from seismic.data.windows import IGNORE_INDEX
from seismic.models import model_task
from seismic.tasks.classification import MONITOR, FaciesClassificationTask, metric_key

# buffered predictions are flushed into the confusion matrix beyond this many samples (dense batches are
# ~10^5-10^6 samples: the per-call overhead that classification batches up is already amortised)
FLUSH_SAMPLES = 1 << 21


def build_segmentation_metrics(num_classes: int) -> MetricCollection:
    """One confusion matrix (everything else is derived from it, :func:`dense_scores`)."""
    return MetricCollection(
        {"confusion": MulticlassConfusionMatrix(num_classes, ignore_index=IGNORE_INDEX, validate_args=False)}
    )


def dense_scores(confusion: np.ndarray | torch.Tensor, class_names: Sequence[str]) -> dict[str, float]:
    """PA, CA per class, MCA, mIoU, FWIU and macro F1 of a confusion matrix (rows true, columns predicted).

    As in the F3 benchmark: CA_c = TP_c / true_c; MCA averages CA over the classes that occur in the truth;
    IoU_c = TP_c / (true_c + predicted_c - TP_c), mIoU averages it over the classes that occur in the truth
    or the prediction; FWIU weights IoU_c by the class's share of the true samples.
    """
    cm = np.asarray(
        confusion.detach().cpu() if isinstance(confusion, torch.Tensor) else confusion, np.float64
    )
    tp = np.diag(cm)
    true = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    total = max(cm.sum(), 1.0)
    union = true + pred - tp
    present = true > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ca = np.where(present, tp / true, 0.0)
        iou = np.where(union > 0, tp / union, 0.0)
        f1 = np.where(true + pred > 0, 2 * tp / (true + pred), 0.0)
    out = {
        "pa": float(tp.sum() / total),
        "mca": float(ca[present].mean()) if present.any() else 0.0,
        "miou": float(iou[union > 0].mean()) if (union > 0).any() else 0.0,
        "fwiu": float((true / total * iou).sum()),
        "macro_f1": float(f1[true + pred > 0].mean()) if (true + pred > 0).any() else 0.0,
    }
    out.update({f"ca_{metric_key(name)}": float(ca[c]) for c, name in enumerate(class_names)})
    return out


class FaciesSegmentationTask(FaciesClassificationTask):
    """Label every sample of a tile with a registered segmentation network (``unet1d``, ``unet2d``).

    Arguments as :class:`FaciesClassificationTask`, plus ``dice_weight`` (>= 0): weight of the soft Dice
    term added to the cross-entropy. The window spec is the training tile: its length (and width) must be
    multiples of the network's ``size_multiple``.
    """

    def __init__(
        self,
        model: str = "unet1d",
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
        dice_weight: float = 0.0,
    ) -> None:
        super().__init__(
            model=model,
            model_kwargs=model_kwargs,
            num_classes=num_classes,
            class_names=class_names,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            optimizer=optimizer,
            scheduler=scheduler,
            window=window,
            normalisation=normalisation,
            data_hash=data_hash,
            metadata=metadata,
        )
        if model_task(self.net) != "segmentation":
            raise ValueError(
                f"model {model!r} is a {model_task(self.net)} network; FaciesSegmentationTask needs one "
                "whose task is 'segmentation' (unet1d, unet2d)"
            )
        if not (np.isfinite(dice_weight) and dice_weight >= 0):
            raise ValueError(f"dice_weight must be a finite number >= 0, got {dice_weight}")
        self.dice_weight = float(dice_weight)
        multiple = int(getattr(self.net, "size_multiple", 1))
        if window is not None:
            for key in ("length", "width") if int(window.get("width", 1)) > 1 else ("length",):
                size = int(window.get(key, 64))
                if size % multiple:
                    raise ValueError(
                        f"data.window.{key} = {size}: model {model!r} takes tiles whose sizes are multiples "
                        f"of {multiple} (2 ** depth); use e.g. {max(multiple, size // multiple * multiple)}"
                    )
        metrics = build_segmentation_metrics(int(num_classes))
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ce = F.cross_entropy(
            logits,
            target,
            weight=self.class_weight,
            label_smoothing=self.hparams.label_smoothing,
            ignore_index=IGNORE_INDEX,
        )
        if self.dice_weight == 0:
            return ce
        return ce + self.dice_weight * soft_dice_loss(logits, target, self.hparams.num_classes)

    def _shared_step(self, batch: Any, stage: str) -> torch.Tensor:
        x, y = batch[0], batch[1]
        logits, _ = self(x)
        loss = self.loss(logits, y)
        self._pending[stage].append((logits.detach().argmax(dim=1).flatten(), y.flatten()))
        if sum(p.numel() for p, _ in self._pending[stage]) >= FLUSH_SAMPLES:
            self._flush_metrics(stage)
        log = {"sync_dist": True, "batch_size": y.shape[0]}
        if stage == "train":
            self.train_loss_mean.update(loss.detach(), weight=y.shape[0])
            if self.global_step % max(1, self.trainer.log_every_n_steps) == 0:
                self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, **log)
        else:
            self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage == "val", **log)
        return loss

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """``{"probabilities": [B, C, (W,) T], "class": [B, (W,) T], "embedding": [B, D]}``."""
        return super().predict_step(batch, batch_idx, dataloader_idx)

    def _log_epoch_metrics(self, stage: str) -> None:
        metrics: MetricCollection = getattr(self, f"{stage}_metrics")
        self._flush_metrics(stage)
        if not self._updated[stage]:
            return
        confusion = metrics.compute()[f"{stage}/confusion"]  # synchronised across ranks by torchmetrics
        setattr(self, f"{stage}_confusion", confusion.detach().cpu().numpy())
        scores = dense_scores(confusion, self.class_names)
        scores["accuracy"], scores["balanced_accuracy"] = scores["pa"], scores["mca"]
        values = {f"{stage}/{k}": torch.tensor(v, dtype=torch.float32) for k, v in scores.items()}
        if stage == "val":
            self.log(MONITOR, values.pop(MONITOR), prog_bar=True, sync_dist=True)
            self.log("val/miou", values.pop("val/miou"), prog_bar=True, sync_dist=True)
        self.log_dict(values, sync_dist=True)
        metrics.reset()
        self._updated[stage] = False


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``1 - mean_c (2 sum p_c y_c) / (sum p_c + sum y_c)`` over the classes present in the batch's targets
    or predictions; ignored samples count for neither."""
    probs = torch.softmax(logits.float(), dim=1)
    valid = target != IGNORE_INDEX
    onehot = F.one_hot(target.clamp_min(0), num_classes).movedim(-1, 1).to(probs.dtype)
    mask = valid.unsqueeze(1).to(probs.dtype)
    probs, onehot = probs * mask, onehot * mask
    dims = (0, *range(2, probs.dim()))
    intersection = (probs * onehot).sum(dims)
    denominator = probs.sum(dims) + onehot.sum(dims)
    keep = onehot.sum(dims) > 0
    dice = (2 * intersection + 1.0) / (denominator + 1.0)
    return 1.0 - dice[keep].mean() if keep.any() else logits.sum() * 0.0

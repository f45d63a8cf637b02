"""Dense segmentation: metrics against torchmetrics, dense targets, loss and training, the task choice."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from seismic.data.datamodule import SeismicDataModule
from seismic.data.windows import IGNORE_INDEX, WindowSpec, extract_label_windows, extract_windows
from seismic.models import list_models, model_task
from seismic.tasks import (
    FaciesClassificationTask,
    FaciesSegmentationTask,
    dense_scores,
    load_task,
    task_class,
)
from seismic.tasks.segmentation import soft_dice_loss

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*number of training batches.*")
pytestmark = pytest.mark.usefixtures("single_torch_thread")

CLASSES = ["a", "b", "c"]


def test_dense_scores_match_torchmetrics_and_the_f3_definitions():
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (5000,), generator=gen)
    preds = torch.where(
        torch.rand(5000, generator=gen) < 0.7, target, torch.randint(0, 4, (5000,), generator=gen)
    )
    cm = np.zeros((4, 4))
    np.add.at(cm, (target.numpy(), preds.numpy()), 1)
    scores = dense_scores(cm, ["w", "x", "y", "z"])
    assert scores["pa"] == pytest.approx(
        MulticlassAccuracy(4, average="micro")(preds, target).item(), abs=1e-6
    )
    assert scores["mca"] == pytest.approx(
        MulticlassAccuracy(4, average="macro")(preds, target).item(), abs=1e-6
    )
    assert scores["miou"] == pytest.approx(MulticlassJaccardIndex(4)(preds, target).item(), abs=1e-6)
    per_class = MulticlassAccuracy(4, average=None)(preds, target).numpy()
    assert [scores[f"ca_{k}"] for k in "wxyz"] == pytest.approx(per_class.tolist(), abs=1e-6)
    iou = MulticlassJaccardIndex(4, average=None)(preds, target).numpy()
    share = np.bincount(target.numpy(), minlength=4) / 5000
    assert scores["fwiu"] == pytest.approx(float((share * iou).sum()), abs=1e-6)
    perfect = dense_scores(np.diag([3.0, 0.0, 5.0]), ["p", "q", "r"])  # class q absent: not averaged in
    assert perfect["miou"] == perfect["mca"] == perfect["pa"] == perfect["fwiu"] == 1.0


@pytest.mark.parametrize("width", [1, 5])
@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_label_windows_label_every_sample_the_amplitude_window_reads(width, pad_mode):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, (4, 9, 20))
    spec = WindowSpec(length=8, width=width, pad_mode=pad_mode)
    il, xl, t = np.array([1, 3, 0]), np.array([0, 8, 4]), np.array([2, 19, 10])
    dense = extract_label_windows(labels, il, xl, t, spec)
    # the same gather on the labels as float "amplitudes" must give the same numbers where data exist
    as_amplitudes = extract_windows(labels.astype(np.float32) + 1.0, il, xl, t, spec)[:, 0]
    assert dense.shape == (3, *spec.sample_shape[1:]) and dense.dtype == np.int64
    inside = dense != IGNORE_INDEX
    np.testing.assert_array_equal(dense[inside] + 1, as_amplitudes[inside])
    if pad_mode == "constant":
        assert (~inside).any() and (as_amplitudes[~inside] == 0).all()
    else:
        assert inside.all()


def test_datamodule_gives_dense_targets_and_cross_axis_tiles_stay_in_their_block(tmp_path):
    dm = SeismicDataModule(
        source="synthetic",
        cache_dir=tmp_path / "cache",
        survey={"n_inlines": 40, "n_crosslines": 16, "n_samples": 96, "seed": 3},
        window={"length": 32, "width": 8},
        sampling={"train": 64, "val": 16, "test": 16, "cross_axis_fraction": 0.5},
        split={"gap": 2},
        batch_size=8,
        dense=True,
    )
    dm.prepare_data()
    dm.setup("fit")
    train = dm.datasets["train"]
    assert train.cross is not None and 0 < train.cross.mean() < 1
    assert dm.datasets["val"].cross is None  # evaluation keeps the configured axis
    x, y = train.__getitems__(list(range(16)))
    assert x.shape == (16, 1, 8, 32) and y.shape == (16, 8, 32) and y.dtype == torch.int64
    _, labels = train.arrays(0)
    for i in np.flatnonzero(train.cross[:16]):  # a cross-axis tile runs across inlines of its block
        spec = train.cross_spec
        assert spec.axis == "crossline"
        want = extract_label_windows(labels, train.il[[i]], train.xl[[i]], train.t[[i]], spec)[0]
        np.testing.assert_array_equal(y[i].numpy(), want)
    assert set(np.unique(y.numpy())) <= set(range(len(dm.class_names)))


def make_task(name: str = "unet1d", **overrides) -> FaciesSegmentationTask:
    torch.manual_seed(0)
    width = 1 if name.endswith("1d") else 8
    kwargs = {
        "model": name,
        "model_kwargs": {"width": 8, "depth": 2, "dropout": 0.0},
        "num_classes": len(CLASSES),
        "class_names": CLASSES,
        "optimizer": {"name": "adam", "lr": 5e-3},
        "window": {"length": 32, "width": width, "axis": "inline", "pad_mode": "reflect"},
        "normalisation": {"mean": 0.0, "std": 1.0, "clip_sigma": 5.0},
        "metadata": {"dt_ms": 4.0},
    }
    kwargs.update(overrides)
    return FaciesSegmentationTask(**kwargs)


def layered(n: int, width: int, seed: int = 0) -> TensorDataset:
    """Tiles whose class is set by the local amplitude level: learnable only sample by sample."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n, 32) if width == 1 else (n, width, 32)
    y = torch.randint(0, 3, (n, 1) if width == 1 else (n, 1, 1), generator=gen).expand(shape).clone()
    y[..., 16:] = (y[..., 16:] + 1) % 3  # a boundary mid-tile
    x = (y.float() - 1.0) + 0.1 * torch.randn(shape, generator=gen)
    return TensorDataset(x.unsqueeze(1), y)


@pytest.mark.parametrize("name", [n for n in list_models() if model_task(n) == "segmentation"])
def test_task_learns_dense_labels_and_logs_the_f3_metrics(name, tmp_path):
    task = make_task(name)
    width = 1 if name.endswith("1d") else 8
    trainer = L.Trainer(
        max_epochs=8, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    data = DataLoader(layered(64, width), batch_size=16, shuffle=True)
    val = DataLoader(layered(32, width, seed=1), batch_size=16)
    trainer.fit(task, data, val)
    metrics = trainer.callback_metrics
    for key in ("val/pa", "val/mca", "val/miou", "val/fwiu", "val/macro_f1", "val/ca_a", "train/miou"):
        assert key in metrics, key
    assert float(metrics["val/miou"]) > 0.9 and float(metrics["val/pa"]) > 0.95
    assert task.val_confusion.shape == (3, 3) and task.val_confusion.sum() == 32 * width * 32
    path = tmp_path / "seg.ckpt"
    trainer.save_checkpoint(path)
    again = load_task(path)
    assert type(again) is FaciesSegmentationTask and again.hparams.model == name


def test_loss_skips_ignored_samples_and_dice_adds_to_it():
    task = make_task(dice_weight=0.5)
    logits = torch.randn(2, 3, 32)
    target = torch.randint(0, 3, (2, 32))
    ignored = target.clone()
    ignored[:, :8] = IGNORE_INDEX
    ce = torch.nn.functional.cross_entropy(logits[..., 8:], target[..., 8:])
    dice = soft_dice_loss(logits[..., 8:], target[..., 8:], 3)
    assert task.loss(logits, ignored).item() == pytest.approx((ce + 0.5 * dice).item(), rel=1e-5)
    perfect = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 50
    assert soft_dice_loss(perfect, target, 3).item() < 1e-3


def test_the_model_picks_the_task_and_mismatches_are_named():
    assert {model_task(n) for n in list_models()} == {"classification", "segmentation"}
    assert task_class("unet2d") is FaciesSegmentationTask and task_class("cnn1d") is FaciesClassificationTask
    with pytest.raises(ValueError, match="'cnn1d' is a classification network"):
        make_task("cnn1d", model_kwargs={"width": 8, "depth": 2})
    with pytest.raises(ValueError, match=r"data.window.length = 30: .*multiples of 4"):
        make_task(window={"length": 30, "width": 1})
    with pytest.raises(ValueError, match="dice_weight"):
        make_task(dice_weight=-1.0)


def test_export_metadata_say_task_tile_overlap_and_outputs():
    from seismic.export.onnx import metadata_from_hparams, summarise_tiles

    task = make_task("unet2d")
    meta = metadata_from_hparams(dict(task.hparams), embedding_dim=task.net.embedding_dim)
    assert meta["task"] == "segmentation" and meta["default_overlap"] == 0.25
    assert meta["tile"] == {
        "trained": [8, 32],
        "axes": ["traces", "time"],
        "size_multiple": 4,
        "dynamic": True,
    }
    assert meta["outputs"]["probabilities"] == [None, 3, None, None]
    assert set(meta["outputs_meaning"]) == {"logits", "probabilities", "embedding"}
    classifier = FaciesClassificationTask(
        model="cnn1d", num_classes=3, window={"length": 32, "width": 1}, metadata={"dt_ms": 4.0},
        normalisation={"mean": 0.0, "std": 1.0, "clip_sigma": 5.0}, class_names=CLASSES,
    )  # fmt: skip
    plain = metadata_from_hparams(dict(classifier.hparams), embedding_dim=classifier.net.embedding_dim)
    assert plain["task"] == "classification" and "tile" not in plain
    probabilities = np.zeros((1, 3, 2, 2), dtype=np.float32)
    probabilities[0, 0] = [[0.9, 0.2], [0.9, 0.9]]
    probabilities[0, 1] = 1 - probabilities[0, 0]
    summary = summarise_tiles(probabilities)
    np.testing.assert_allclose(summary["class_shares"], [[0.75, 0.25, 0.0]])
    np.testing.assert_allclose(summary["mean_max_probability"], [0.875])
    np.testing.assert_allclose(summary["probabilities"], [[0.725, 0.275, 0.0]], rtol=1e-6)


def test_label_cube_as_segy_trains_like_the_npy_one(tmp_path):
    """Interpreters export facies as a SEG-Y cube on the seismic grid: read, checked and used as labels."""
    from seismic.data.survey import Survey
    from seismic.data.synthetic import SyntheticSurveyConfig, generate_survey
    from seismic.io.errors import SurveyFileError
    from seismic.io.segy import write_cube

    survey = generate_survey(SyntheticSurveyConfig(n_inlines=20, n_crosslines=8, n_samples=48, seed=1))
    cube = tmp_path / "s.sgy"
    write_cube(cube, survey.amplitudes, survey.dt_ms, inlines=np.arange(50, 70))
    labels = tmp_path / "facies.sgy"
    write_cube(labels, survey.labels.astype(np.float32), survey.dt_ms, inlines=np.arange(50, 70))
    dm = SeismicDataModule(
        source="segy", cache_dir=tmp_path / "cache", segy={"path": str(cube), "labels_path": str(labels)},
        window={"length": 16, "width": 4}, sampling={"train": 8, "val": 4, "test": 4}, split={"gap": 1},
        dense=True,
    )  # fmt: skip
    dm.prepare_data()
    dm.setup("fit")
    np.testing.assert_array_equal(Survey.load(dm.survey_dirs[0]).labels, survey.labels)
    _, y = dm.datasets["train"].__getitems__([0, 1])
    assert y.shape == (2, 4, 16)
    fractional = tmp_path / "bad.sgy"
    write_cube(fractional, survey.labels.astype(np.float32) + 0.5, survey.dt_ms, inlines=np.arange(50, 70))
    with pytest.raises(SurveyFileError, match="labels must be non-negative integers"):
        bad = {"path": str(cube), "labels_path": str(fractional)}
        SeismicDataModule(source="segy", cache_dir=tmp_path / "c2", segy=bad).prepare_data()
    shifted = tmp_path / "shifted.sgy"
    write_cube(shifted, survey.labels.astype(np.float32), survey.dt_ms, inlines=np.arange(51, 71))
    with pytest.raises(SurveyFileError, match="label cube grid"):
        bad = {"path": str(cube), "labels_path": str(shifted)}
        SeismicDataModule(source="segy", cache_dir=tmp_path / "c3", segy=bad).prepare_data()

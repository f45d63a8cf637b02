"""FaciesClassificationTask on tiny in-memory data: logging, overfitting, checkpoints, losses, schedulers."""

from __future__ import annotations

import warnings

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from seismic.models import list_models, model_task
from seismic.tasks import MONITOR, FaciesClassificationTask

CLASSES = ["parallel", "transparent", "chaotic", "thin bedded"]  # the space checks key sanitising
T, W = 32, 8

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*number of training batches.*")


pytestmark = pytest.mark.usefixtures("single_torch_thread")
# segmentation models have their own task (tests/tasks/test_segmentation.py)
CLASSIFIERS = [n for n in list_models() if model_task(n) == "classification"]


def window(name: str) -> dict:
    return {"length": T, "width": 1 if name == "cnn1d" else W, "axis": "inline", "pad_mode": "reflect"}


def input_shape(task: FaciesClassificationTask) -> tuple[int, ...]:
    return (1, T) if task.net.input_ndim == 1 else (1, W, T)


def small_kwargs(name: str) -> dict:
    return {"width": 8, "depth": 2, "embedding_dim": 16, "dropout": 0.0}


def make_task(name: str = "cnn1d", **overrides) -> FaciesClassificationTask:
    torch.manual_seed(0)
    kwargs = {
        "model": name,
        "model_kwargs": small_kwargs(name),
        "num_classes": len(CLASSES),
        "class_names": CLASSES,
        "optimizer": {"name": "adam", "lr": 3e-3},
        "window": window(name),
        "normalisation": {"mean": 0.0, "std": 1.0, "clip_sigma": 5.0},
        "data_hash": "abc123",
        "metadata": {"source": "test"},
    }
    kwargs.update(overrides)
    return FaciesClassificationTask(**kwargs)


def random_data(task: FaciesClassificationTask, n: int, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *input_shape(task), generator=gen)
    return TensorDataset(x, torch.randint(0, len(CLASSES), (n,), generator=gen))


def centre_coded_data(task: FaciesClassificationTask, n: int, seed: int = 0) -> TensorDataset:
    """The class is the amplitude level of a short block at the window centre; the rest of the window holds
    blocks of random *other* levels, so only the centre identifies the class."""
    gen = torch.Generator().manual_seed(seed)
    levels = torch.linspace(-1.5, 1.5, len(CLASSES))
    y = torch.arange(n) % len(CLASSES)
    blocks = torch.randint(0, len(CLASSES), (n, T // 4), generator=gen)
    trace = levels[blocks].repeat_interleave(4, dim=1)  # [n, T]
    trace[:, T // 2 - 2 : T // 2 + 2] = levels[y][:, None]
    trace = trace + 0.1 * torch.randn(n, T, generator=gen)
    x = (
        trace[:, None]
        if task.net.input_ndim == 1
        else trace[:, None, None, :].expand(n, 1, W, T).contiguous()
    )
    return TensorDataset(x, y)


def trainer(tmp_path, **kwargs) -> L.Trainer:
    options = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
    }
    options.update(kwargs)
    return L.Trainer(**options)


def loader(dataset: TensorDataset, batch_size: int = 16, shuffle: bool = False) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_fit_test_predict_and_reload(name, tmp_path):
    task = make_task(name)
    data = random_data(task, 48)
    run = trainer(tmp_path, fast_dev_run=2)
    run.fit(task, loader(data, shuffle=True), loader(data))

    logged = set(run.callback_metrics)
    expected = {"train/loss", "train/loss_epoch", "val/loss", MONITOR, "val/accuracy", "val/miou"}
    expected |= {"train/macro_f1", "val/balanced_accuracy", "val/f1_parallel", "val/f1_thin_bedded"}
    assert expected <= logged, sorted(logged)
    assert not any("confusion" in key for key in logged)
    assert task.val_confusion.shape == (len(CLASSES), len(CLASSES))

    run.test(task, loader(data))
    assert {"test/loss", "test/accuracy", "test/macro_f1", "test/f1_chaotic"} <= set(run.callback_metrics)
    assert isinstance(task.test_confusion, np.ndarray)
    assert task.test_confusion.sum() == 32  # fast_dev_run=2 batches of 16

    out = run.predict(task, loader(data))[0]
    assert out["probabilities"].shape == (16, len(CLASSES))
    torch.testing.assert_close(out["probabilities"].sum(1), torch.ones(16))
    assert out["class"].shape == (16,) and out["class"].dtype == torch.int64
    assert out["embedding"].shape == (16, task.net.embedding_dim)

    path = tmp_path / "task.ckpt"
    run.save_checkpoint(path)
    loaded = FaciesClassificationTask.load_from_checkpoint(path)
    assert loaded.hparams.window == window(name)
    assert loaded.hparams.normalisation["std"] == 1.0 and loaded.hparams.data_hash == "abc123"
    assert loaded.class_names == CLASSES
    x = data.tensors[0][:5]
    task.eval()
    loaded.eval()
    with torch.no_grad():
        for a, b in zip(task(x), loaded(x), strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_bf16_mixed_precision_and_model_summary(name, tmp_path):
    """The CUDA recipe's autocast path, on CPU; the summary runs ``example_input_array`` through the net."""
    task = make_task(name)
    data = random_data(task, 32)
    run = trainer(tmp_path, fast_dev_run=1, precision="bf16-mixed", enable_model_summary=True)
    run.fit(task, loader(data, shuffle=True), loader(data))
    assert np.isfinite(float(run.callback_metrics["train/loss"]))
    assert MONITOR in run.callback_metrics
    out = run.predict(task, loader(data))[0]
    assert out["probabilities"].dtype == torch.float32


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_overfits_centre_coded_data(name, tmp_path):
    task = make_task(
        name,
        model_kwargs={**small_kwargs(name), "width": 16},
        optimizer={"name": "adamw", "lr": 1e-2, "weight_decay": 0.0},
    )
    data = centre_coded_data(task, 64)
    run = trainer(tmp_path, max_epochs=8, limit_val_batches=0)
    run.fit(task, loader(data, shuffle=True))
    assert run.global_step == 32
    task.eval()
    with torch.no_grad():
        accuracy = (task(data.tensors[0])[0].argmax(1) == data.tensors[1]).float().mean().item()
    assert accuracy > 0.95
    assert task.train_confusion is not None


def test_class_weights_and_label_smoothing_change_the_loss():
    logits = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.5, 2.0]])
    target = torch.tensor([0, 1, 2])
    plain = make_task().loss(logits, target)
    torch.testing.assert_close(plain, F.cross_entropy(logits, target))

    weights = [1.0, 1.0, 5.0, 1.0]
    weighted = make_task(class_weights=weights).loss(logits, target)
    torch.testing.assert_close(weighted, F.cross_entropy(logits, target, weight=torch.tensor(weights)))
    assert weighted > plain  # the misclassified sample's class weighs more

    smoothed = make_task(label_smoothing=0.2).loss(logits[:2], target[:2])
    assert smoothed > make_task().loss(logits[:2], target[:2])  # confident and right: smoothing costs
    torch.testing.assert_close(smoothed, F.cross_entropy(logits[:2], target[:2], label_smoothing=0.2))


def test_class_weight_buffer_moves_with_the_module_but_stays_out_of_state_dict():
    task = make_task(class_weights=[1.0, 2.0, 3.0, 4.0])
    assert "class_weight" not in task.state_dict()
    assert task.double().class_weight.dtype == torch.float64


@pytest.mark.parametrize(
    ("scheduler", "interval"),
    [
        (None, None),
        ({"name": "none"}, None),
        ({"name": "cosine", "interval": "epoch", "eta_min": 1e-5}, "epoch"),
        ({"name": "cosine", "interval": "step", "warmup": 2}, "step"),
        ({"name": "onecycle", "pct_start": 0.25}, "step"),
        ({"name": "plateau", "patience": 0, "factor": 0.5}, "epoch"),
    ],
)
def test_schedulers_configure_and_step(scheduler, interval, tmp_path):
    task = make_task(scheduler=scheduler, optimizer={"name": "sgd", "lr": 0.1, "momentum": 0.9})
    data = random_data(task, 32)
    run = trainer(tmp_path, max_epochs=3, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0)
    run.fit(task, loader(data, shuffle=True), loader(data))
    assert run.global_step == 6
    lr = run.optimizers[0].param_groups[0]["lr"]
    if interval is None:
        assert run.lr_scheduler_configs == []
        assert lr == pytest.approx(0.1)
        return
    config = run.lr_scheduler_configs[0]
    assert config.interval == interval
    if scheduler["name"] == "plateau":
        assert config.monitor == MONITOR and config.scheduler.mode == "max"
    else:
        assert lr != pytest.approx(0.1)


def test_onecycle_needs_a_finite_run(tmp_path):
    task = make_task(scheduler={"name": "onecycle"})
    data = random_data(task, 16)
    run = trainer(tmp_path, max_epochs=-1, max_steps=-1, limit_train_batches=1)
    with pytest.raises(ValueError, match="number of training steps"):
        run.fit(task, loader(data))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimizers_and_weight_decay_groups(name):
    task = make_task(optimizer={"name": name, "lr": 1e-3, "weight_decay": 0.01})
    optimizer = task.configure_optimizers()
    decays = sorted(g["weight_decay"] for g in optimizer.param_groups)
    assert decays == [0.0, 0.01]
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(task.net.parameters()))


def test_omegaconf_inputs_are_saved_as_plain_values():
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create(
        {
            "model_kwargs": small_kwargs("cnn1d"),
            "class_names": CLASSES,
            "optimizer": {"name": "adam", "lr": 0.01},
        }
    )
    task = make_task(model_kwargs=cfg.model_kwargs, class_names=cfg.class_names, optimizer=cfg.optimizer)
    assert type(task.hparams.model_kwargs) is dict
    assert type(task.hparams.class_names) is list
    assert type(task.hparams.optimizer) is dict


def test_example_input_array_follows_the_window():
    assert tuple(make_task("cnn1d").example_input_array.shape) == (1, 1, T)
    assert tuple(make_task("cnn2d").example_input_array.shape) == (1, 1, W, T)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window": {"length": T, "width": 8}}, "2D samples"),
        ({"model_kwargs": {"num_classes": 3}}, "num_classes"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"class_weights": [1.0, 2.0]}, "class_weights"),
        ({"class_weights": [0.0, 0.0, 0.0, 0.0]}, "class_weights"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"optimizer": {"name": "lamb", "lr": 0.1}}, "optimizer.name"),
        ({"optimizer": {"name": "adam"}}, "optimizer.lr"),
        ({"scheduler": {"name": "step"}}, "scheduler.name"),
        ({"scheduler": {"name": "cosine", "interval": "batch"}}, "scheduler.interval"),
        ({"model": "nope"}, "unknown model"),
        ({"model_kwargs": {"depht": 2}}, "depht"),
        ({"class_names": ["a", "a ", "b", "c"]}, "unique"),
    ],
)
def test_bad_configuration_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_task(**overrides)
